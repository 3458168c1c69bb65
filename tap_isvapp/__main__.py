from tap_isvapp.tap import TapIsvapp

TapIsvapp.cli()
