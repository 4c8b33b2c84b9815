"""What ``pipeline serve`` answers over HTTP: Bitbucket's webhooks and a health check.

``webhooks`` decides what a delivery is worth (no Flask, no sockets); ``app`` is the Flask
application around it; ``server`` serves an application with waitress in a background thread.
"""
