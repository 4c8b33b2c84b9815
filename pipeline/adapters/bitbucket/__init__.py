"""``ports.SourceControl`` for one Bitbucket Cloud repository (``cloud.BitbucketCloud``), and
Bitbucket's JSON in our words (``shapes``)."""

from pipeline.adapters.bitbucket.cloud import PAGELEN, BitbucketCloud
from pipeline.adapters.bitbucket.credential import BitbucketCredential, CredentialKind

__all__ = ["PAGELEN", "BitbucketCloud", "BitbucketCredential", "CredentialKind"]
