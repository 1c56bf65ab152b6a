"""forward(x) against forward(x, need_backward=False): rnnkit inference with and without a tape, float32, one layer per
(cell, T, B, I, H); median ms of 9 calls after 0.3 s of calls; one JSON object on stdout.  usage: no_tape_ab.py tape|notape"""
import sys, time, numpy as np, rnnkit, json
mode = sys.argv[1] == "notape"
out={}
for cell, cls in (("lstm", rnnkit.LSTM), ("rnn", rnnkit.RNN), ("gru", rnnkit.GRU)):
    for (T,B,I,H) in [(100,32,64,128),(50,64,128,256),(64,128,256,512)]:
        layer=cls(I,H,seed=0); x=np.random.default_rng(0).standard_normal((T,B,I)).astype(np.float32)
        f=lambda: layer.forward(x, need_backward=not mode)
        t0=time.perf_counter()
        while time.perf_counter()-t0<0.3: f()
        ts=[]
        for _ in range(9):
            t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
        out[f"{cell} {T},{B},{I},{H}"]=float(np.median(ts)*1e3)
print(json.dumps(out))
