"""``ports.SourceControl`` for one Bitbucket Cloud repository (``cloud.BitbucketCloud``), and
Bitbucket's JSON in our words (``shapes``)."""

from pipeline.adapters.bitbucket.cloud import PAGELEN, BitbucketCloud

__all__ = ["PAGELEN", "BitbucketCloud"]
