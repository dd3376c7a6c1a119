#!/usr/bin/env python3
"""Serve a GGUF model over the OpenAI API with xllamacpp (llama.cpp's server).

usage: local_llm.py MODEL.gguf PORT

Listens on 127.0.0.1:PORT; the model is called "local". Endpoints:
/v1/models, /v1/chat/completions (with response_format json_schema), ...
GET /v1/models answers 503 while loading and 200 when ready.
Exits on SIGTERM/SIGINT. See notes/LOCAL_MODEL.md.

Environment: GRADELAB_LLM_THREADS (default 2).
"""

import os
import signal
import sys
import threading


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    model, port = argv[1], int(argv[2])
    if not os.path.isfile(model):
        sys.exit("local_llm: model file not found: %s" % model)
    threads = int(os.environ.get("GRADELAB_LLM_THREADS", "2"))
    n_ctx = 4096

    stop = threading.Event()

    def on_signal(signum, _frame):
        print("local_llm: got signal %d, exiting" % signum, file=sys.stderr, flush=True)
        stop.set()

    # Install the handlers before the (slow) model load so an early SIGTERM
    # still ends the process promptly.
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)

    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = model
    p.port = port
    p.n_ctx = n_ctx
    p.n_parallel = 1
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.hostnames = ["127.0.0.1"]
    p.model_alias = {"local"}  # a set: a plain str would be split into letters
    p.offline = True
    p.warmup = True

    print("local_llm: serving %s on 127.0.0.1:%d (n_ctx=%d, threads=%d)" % (model, port, n_ctx, threads),
          file=sys.stderr, flush=True)
    srv = xlc.Server(p)  # serves in background threads until the process exits
    while not stop.wait(1.0):
        pass
    # llama.cpp's server threads may block in a request; don't wait for them.
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
