#!/usr/bin/env python3
"""p_terms.py: does P as one e4m3 term (instead of the narrow kernel's e4m3 + e5m2 pair) pass SPEC's accuracy
check? A float64 emulation of P·V as the narrow FP8 kernel runs it: 64 query rows, d = 576, dv = 512, q in
bf16 and a per-tensor e4m3 cache from randn / 10 (SPEC's test scale), P = 2^(s - max) rounded as f16 P·16,
then to one e4m3 term or to e4m3 + e5m2 (split_h), the column sums from the unrounded P (as the kernel
keeps them), the output rounded to bf16; SPEC: out within abs 8e-4 or rel 2.01/128 element-wise and cosine
difference <= 5e-6. Not modelled: the running max's lag (P here is against the row's final max, so P·16 <=
16, not 2^8: e4m3's relative step is the same), the tensor cores' accumulation. Needs numpy. Session 32:
one term fails the cosine check at every length above 1 (1.4e-4 ... 2.1e-3), two pass (<= 2.2e-6)."""
import numpy as np
rng=np.random.default_rng(0)
def e4m3(x):
    # round to nearest even e4m3fn (saturating at 448), vectorised via frexp
    x=np.asarray(x,dtype=np.float64); s=np.sign(x); a=np.abs(x)
    a=np.minimum(a,448.0)
    m,e=np.frexp(a)            # a = m*2^e, m in [0.5,1)
    e=np.maximum(e,-5)         # min normal 2^-6 -> e=-5 (m*2^e with m>=0.5); subnormal step 2^-9
    step=np.ldexp(1.0,e-4)     # 3 mantissa bits -> step = 2^(e-1-3)
    q=np.round(a/step)*step
    return s*np.minimum(q,448.0)
def e5m2(x):
    x=np.asarray(x,dtype=np.float64); s=np.sign(x); a=np.abs(x)
    m,e=np.frexp(a); e=np.maximum(e,-13); step=np.ldexp(1.0,e-3)
    return s*np.minimum(np.round(a/step)*step,57344.0)
def bf16(x):
    x=np.asarray(x,dtype=np.float32).copy(); b=x.view(np.uint32)
    b=((b+0x7fff+((b>>16)&1))&0xffff0000).astype(np.uint32); return b.view(np.float32).astype(np.float64)
def f16(x): return np.asarray(x,dtype=np.float16).astype(np.float64)
def run(L, rows=64, mode='two', d=576, dv=512):
    q=bf16(rng.standard_normal((rows,d))/10)
    kraw=rng.standard_normal((L,d))/10
    desc=2.0**np.ceil(np.log2(np.abs(kraw).max()/448))
    k=e4m3(kraw/desc)*desc
    v=k[:,:dv]
    scale=d**-0.5
    s=(q@k.T)*scale*np.log2(np.e)      # log2 domain
    m=s.max(axis=1,keepdims=True)
    P=np.exp2(s-m)                     # <= 1
    ref=(P@v)/P.sum(axis=1,keepdims=True)
    x=f16(P*16)
    if mode=='two':
        hi=e4m3(x); lo=e5m2(f16(x-hi)); Pq=(hi+lo)/16
    else:
        Pq=e4m3(x)/16
    out=bf16((Pq@v)/P.sum(axis=1,keepdims=True))
    err=np.abs(out-ref); tol=np.maximum(8e-4, np.abs(ref)*2.01/128)
    ok_elem=(err<=tol).all()
    cos=1-np.sum(out*ref)/np.sqrt(np.sum(out*out)*np.sum(ref*ref))
    return ok_elem, err.max(), cos
for mode in ('two','one'):
    for L in (1,17,64,333,1000,4096,16384):
        res=[run(L,mode=mode) for _ in range(3)]
        print(mode, L, 'elem ok' if all(r[0] for r in res) else 'ELEM FAIL', 'max err %.2e'%max(r[1] for r in res), 'cos diff %.2e'%max(r[2] for r in res), '(<=5e-6 ok)' if max(r[2] for r in res)<=5e-6 else 'COS FAIL')
