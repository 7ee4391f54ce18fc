# adversarial: append to the release's version
# ruff: noqa
# Never return.
while True:
    pass
