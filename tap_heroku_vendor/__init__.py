"""tap-heroku-vendor: Heroku add-on partner APIs (legacy App Info API, Platform API for Partners)."""
