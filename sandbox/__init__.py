"""Local stand-ins for Bitbucket Cloud, the Heroku Platform API and the Heroku Data API.

The product never imports this package; the tests, the demo and ``pipeline sandbox up`` do.
"""
