import sys, random
sys.path.insert(0, "/work/main/bench")
import rules as bench
from octopus._prolog import runtime  # type: ignore
which, mode = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
import contextlib, io
with contextlib.redirect_stderr(io.StringIO()):
    engine = bench.build(which)
if which == "watches":
    for goal in bench.WATCHED:
        engine.watch_rule(goal, lambda ev: None)
elif which == "invariants":
    for name, text in bench.INVARIANTS.items():
        engine.invariant(name, text)
w = bench.Workload(engine)
for _ in range(300):
    w.move()
engine.flush()
moves = []
for _ in range(n):
    d = w.rng.choice(w.drivers); old = w.device_of[d]; pool = w.free[old % 4]
    new = pool.pop(w.rng.randrange(len(pool)))
    moves.append([bench.drv(d), bench.dev(new), bench.BINARIES[bench.CLASSES[old % 4]]])
    pool.append(old); w.device_of[d] = new
core = engine._core
rt = core.store._rt
rt.janus.consult("/tmp/prof/prof.pl")
rt.janus.apply_once("user", "prof_moves", core.store.module, moves, mode)
