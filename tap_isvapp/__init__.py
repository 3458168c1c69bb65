"""tap-isvapp: ISVapp accounts, exports, taxonomy item usage and raw package usage logs."""
