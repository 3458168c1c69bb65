"""tap-heroku-vendor: Heroku add-on partner App Info API."""
