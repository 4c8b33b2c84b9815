"""The release controller: Bitbucket `develop` -> Heroku staging -> Product Owner approval -> production."""
