"""Result lines for the Python tests (same protocol as tests/test.h)."""
import os
import sys
import traceback

SHARED = os.path.join("..", "shared", "data", "coco-sample")
SSPOSE = os.environ.get("SSPOSE_BIN", "bin/sspose")
TMP = os.environ.get("SSPOSE_TEST_TMP", "/tmp")
_failed = 0


class Skip(Exception):
    pass


def run(fn):
    global _failed
    try:
        fn()
        print(f"ok - {fn.__name__}", flush=True)
    except Skip as e:
        print(f"skip - {fn.__name__}: {e}", flush=True)
    except Exception as e:  # a test's failure is reported, not raised
        tb = traceback.extract_tb(e.__traceback__)[-1]
        msg = f"{os.path.basename(tb.filename)}:{tb.lineno} {type(e).__name__}: {e}".replace("\n", " ")
        print(f"FAIL - {fn.__name__}: {msg[:600]}", flush=True)
        _failed += 1


def end():
    sys.exit(1 if _failed else 0)
