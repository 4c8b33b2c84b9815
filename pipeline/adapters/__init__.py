"""One module per real system, each implementing a Protocol of ``pipeline.ports`` over real HTTP.

- ``bitbucket``: ``BitbucketCloud`` (``ports.SourceControl``) with atlassian-python-api's Cloud client.
- ``heroku``: ``HerokuPlatform`` (``ports.Platform``) with heroku3 and the same requests session.
- ``heroku_data``: ``HerokuBackups`` (``ports.Backups``) against the Heroku Data API.
- ``http``: the shared session factory and the one translation of HTTP failures into our errors.

Nothing is built at import time; ``pipeline.bootstrap`` constructs the adapters.
"""
