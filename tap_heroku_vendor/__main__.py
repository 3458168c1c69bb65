from tap_heroku_vendor.tap import TapHerokuVendor

TapHerokuVendor.cli()
