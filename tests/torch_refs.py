"""PyTorch references of the attention models, built from torch.nn modules (the test oracle).

The module trees use rnnkit's parameter names, so weights are copied name by name.  torch is
passed in by the caller (each test skips on its own without torch).
"""

TORCH_RNN = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def module(torch, **children):
    m = torch.nn.Module()
    for k, v in children.items():
        setattr(m, k, v)
    return m


def score_module(torch, kind, Hq, Hk, A):
    nn, dt = torch.nn, torch.float64
    if kind == "dot":
        return module(torch)
    if kind == "general":
        return module(torch, linear=nn.Linear(Hk, Hq, bias=False, dtype=dt))
    return module(torch, query_proj=nn.Linear(Hq, A, bias=False, dtype=dt), key_proj=nn.Linear(Hk, A, dtype=dt),
                  v=nn.Linear(A, 1, bias=False, dtype=dt))


def attend(torch, kind, score, q, k, mask):
    """q (B, T, Hq), k (B, S, Hk), mask (B, S) bool -> (context (B, T, Hk), weights (B, T, S))."""
    if kind == "dot":
        e = q @ k.transpose(1, 2)
    elif kind == "general":
        e = q @ score.linear(k).transpose(1, 2)
    else:
        e = score.v(torch.tanh(score.query_proj(q)[:, :, None] + score.key_proj(k)[:, None])).squeeze(-1)
    a = torch.softmax(e.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)
    return a @ k, a


def copy_params(torch, tm, params):
    """Copy rnnkit's arrays into the torch module by name; the name sets must be equal."""
    named = dict(tm.named_parameters())
    assert set(named) == set(params), f"parameter names differ: {sorted(set(named) ^ set(params))}"
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(torch.from_numpy(params[n]))


def encode(torch, rnn, x, lengths, T):
    """Packed run of a torch RNN: x (T, B, I) -> (outputs (T, B, D*H) padded with 0, final state)."""
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), enforce_sorted=False)
    out, state = rnn(packed)
    return torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)[0], state


def seq2seq(torch, c):
    """torch version of rnnkit.models.encdec.EncoderDecoder(c): (module, forward(src, lengths, tgt_in) -> logits)."""
    nn, dt = torch.nn, torch.float64
    D, H, L, E = 2 if c.bidirectional else 1, c.hidden, c.layers, c.emb
    rnn = getattr(nn, TORCH_RNN[c.cell])
    m = module(torch, src_embedding=nn.Embedding(c.src_vocab, E, dtype=dt),
               encoder=rnn(E, H, L, bidirectional=c.bidirectional, dtype=dt),
               bridge_h=nn.Linear(D * H, H, dtype=dt), tgt_embedding=nn.Embedding(c.tgt_vocab, E, dtype=dt),
               decoder=rnn(E, H, L, dtype=dt),
               attention=module(torch, score=score_module(torch, c.score, H, D * H, c.attention_size or H),
                                linear_out=nn.Linear(D * H + H, H, bias=False, dtype=dt)),
               out=nn.Linear(H, c.tgt_vocab, dtype=dt))
    if c.cell == "lstm":
        m.bridge_c = nn.Linear(D * H, H, dtype=dt)

    def forward(src, lengths, tgt_in):
        S = src.shape[0]
        keys, dec, _ = run(torch, m, c, src, lengths, tgt_in)
        q, k = dec.transpose(0, 1), keys.transpose(0, 1)
        mask = torch.arange(S)[None, :] < torch.as_tensor(lengths)[:, None]
        ctx, _ = attend(torch, c.score, m.attention.score, q, k, mask)
        h_tilde = torch.tanh(m.attention.linear_out(torch.cat([ctx, q], dim=-1)))
        return m.out(h_tilde).transpose(0, 1)

    return m, forward


def run(torch, m, c, src, lengths, tgt_in):
    """Embeddings, packed encoder, bridge and decoder of a :func:`seq2seq` module ``m``
    -> (keys (S, B, D*H), decoder outputs (T, B, H), decoder inputs y (T, B, E))."""
    D, H, L = 2 if c.bidirectional else 1, c.hidden, c.layers
    S, B = src.shape
    keys, st = encode(torch, m.encoder, m.src_embedding(src), lengths, S)

    def merge(a):  # (L*D, B, H) -> (L, B, D*H)
        return a.reshape(L, D, B, H).permute(0, 2, 1, 3).reshape(L, B, D * H)

    if c.cell == "lstm":
        state0 = (torch.tanh(m.bridge_h(merge(st[0]))), m.bridge_c(merge(st[1])))
    else:
        state0 = torch.tanh(m.bridge_h(merge(st)))
    y = m.tgt_embedding(tgt_in)
    dec, _ = m.decoder(y, state0)
    return keys, dec, y


def pointer(torch, c):
    """torch version of rnnkit.models.pointer.PointerGenerator(c), autograd only: (module, loss_fn(src,
    lengths, tgt_in, tgt_out, tgt_mask) -> (loss, P (B, T, V_ext), p_gen (B, T, 1) or None, a, cov (B, T, S)))
    with numpy inputs as the rnnkit model takes them (extended source ids).  float64 until ``module.float()``."""
    nn, dt = torch.nn, torch.float64
    V = c.tgt_vocab
    tm, _ = seq2seq(torch, c)
    A = c.attention_size or c.hidden
    if c.coverage:
        tm.attention.w_cov = nn.Parameter(torch.zeros(A, dtype=dt))
    if c.copy:
        D = 2 if c.bidirectional else 1
        tm.p_gen = nn.Linear(D * c.hidden + c.hidden + c.emb, 1, dtype=dt)  # [c; s; x]

    def loss_fn(src, lengths, tgt_in, tgt_out, tgt_mask):
        src, tgt_in, tgt_out = (torch.from_numpy(x) for x in (src, tgt_in, tgt_out))
        Sx, Bx = src.shape
        keys, dec, y = run(torch, tm, c, torch.where(src >= V, 1, src), lengths, torch.where(tgt_in >= V, 1, tgt_in))
        q, k, x = dec.transpose(0, 1), keys.transpose(0, 1), y.transpose(0, 1)  # batch-major
        mask = torch.arange(Sx)[None, :] < torch.as_tensor(lengths)[:, None]
        sc = tm.attention.score
        qp, kp = sc.query_proj(q), sc.key_proj(k)
        ft = qp.dtype
        cov, a_all, cov_all = torch.zeros(Bx, Sx, dtype=ft), [], []
        for t in range(q.shape[1]):
            pre = qp[:, t, None, :] + kp
            if c.coverage:
                pre = pre + cov[:, :, None] * tm.attention.w_cov
            e = sc.v(torch.tanh(pre))[..., 0].masked_fill(~mask, float("-inf"))
            a = torch.softmax(e, dim=-1)
            a_all.append(a)
            cov_all.append(cov)
            cov = cov + a
        a, covs = torch.stack(a_all, 1), torch.stack(cov_all, 1)  # (B, T, S)
        ctx = a @ k
        p_vocab = torch.softmax(tm.out(torch.tanh(tm.attention.linear_out(torch.cat([ctx, q], -1)))), -1)
        V_ext = max(V, int(src.max()) + 1)
        pg = None
        if c.copy:
            pg = torch.sigmoid(tm.p_gen(torch.cat([ctx, q, x], -1)))
            P = torch.cat([pg * p_vocab, torch.zeros(Bx, q.shape[1], V_ext - V, dtype=ft)], -1)
            P = P.scatter_add(2, src.T[:, None, :].expand(-1, q.shape[1], -1), (1 - pg) * a)
        else:
            P = torch.cat([p_vocab, torch.zeros(Bx, q.shape[1], V_ext - V, dtype=ft)], -1)
        if not c.copy:
            tgt_out = torch.where(tgt_out >= V, 1, tgt_out)
        m_t = torch.from_numpy(tgt_mask).T.to(ft)
        p_y = P.gather(2, tgt_out.T[:, :, None])[..., 0]
        n = m_t.sum()
        loss = -(torch.log(p_y) * m_t).sum() / n
        if c.coverage:
            loss = loss + c.cov_loss_weight * (torch.minimum(a, covs).sum(-1) * m_t).sum() / n
        return loss, P, pg, a, covs

    return tm, loss_fn


def classifier(torch, c):
    """torch version of rnnkit.models.classifier.SequenceClassifier(c): (module, forward(ids, lengths) -> logits)."""
    nn, dt = torch.nn, torch.float64
    D, H, L = 2 if c.bidirectional else 1, c.hidden, c.layers
    m = module(torch, embedding=nn.Embedding(c.vocab_size, c.emb, dtype=dt),
               encoder=getattr(nn, TORCH_RNN[c.cell])(c.emb, H, L, bidirectional=c.bidirectional, dtype=dt),
               out=nn.Linear(D * H, c.num_classes, dtype=dt))
    if c.pooling == "attention":
        m.pool = module(torch, score=score_module(torch, c.score, D * H, D * H, c.attention_size or D * H))
        m.pool.query = nn.Parameter(torch.zeros(D * H, dtype=dt))

    def forward(ids, lengths):
        T, B = ids.shape
        h, st = encode(torch, m.encoder, m.embedding(ids), lengths, T)
        lt = torch.as_tensor(lengths)
        mask = torch.arange(T)[None, :] < lt[:, None]  # (B, T)
        if c.pooling == "last":
            h_n = st[0] if c.cell == "lstm" else st
            p = h_n[-D:].permute(1, 0, 2).reshape(B, D * H)
        elif c.pooling == "mean":
            p = h.sum(0) / lt[:, None]
        elif c.pooling == "max":
            p = h.masked_fill(~mask.T[:, :, None], float("-inf")).max(0).values
        else:
            p = attend(torch, c.score, m.pool.score, m.pool.query.expand(B, 1, D * H), h.transpose(0, 1), mask)[0][:, 0]
        return m.out(p)

    return m, forward
