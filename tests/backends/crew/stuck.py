"""A crew whose import never ends (an endless loop at module level)."""

import time

while True:
    time.sleep(1)


def run(inputs):
    return inputs
