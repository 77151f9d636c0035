#!/usr/bin/env python3
"""A PyTorch reference of onerec's model, for speed comparisons (issue 18).

The same architecture as the `beauty` config builds it in Rust (src/model/*, src/nn/*):
- encoder: item = sum of its code-token embeddings, a leading summary slot (BOS),
  left-padded histories with recency-aligned learned positions, pre-norm RMSNorm
  (eps 1e-6), bidirectional multi-head attention under an additive -1e9 padding mask,
  SwiGLU FFN, final RMSNorm;
- decoder: token + learned position embeddings, pre-norm causal self-attention,
  cross-attention over the encoder output, a sparse MoE FFN (router softmax, top-k by
  probs + loss-free bias, gates renormalised over the k, an always-on shared expert;
  each expert runs on its own tokens: index_select -> SwiGLU -> index_add), final
  RMSNorm and an untied output head; every linear layer is bias-free;
- loss: mean token cross-entropy over unmasked targets; AdamW (decay on linear
  matrices only), global-norm clipping 1.0, loss-free bias nudged after each step.
It reads onerec's own files: a prepared dataset (histories.safetensors, item_ids.txt)
and a tokenizer directory (codes.tsv, manifest.json), so the vocabulary, items and
training examples are ours. Batches: every (user, position) of each user's training
part (leave-one-out), target = one item + EOS (train.session_len = 1), 256 per batch,
length-bucketed like src/train/data.rs (windows of 50 batches sorted by history length,
full batches shuffled); the shuffle is numpy's, so batches are the same in
distribution, not in order.

Generation: beam search (beam 20, top 10, one item) with a KV cache (self K/V
concatenated per step; every cache, cross K/V included, re-indexed by parent row each
step, as src/model/mod.rs does) and the item-trie mask (only codes that extend a
catalogue prefix are scored), batched over 64 users like `onerec generate`.

Usage: onerec_torch.py train|generate --data DIR --tokenizer DIR [options]; prints one
JSON line of results. `params` prints the parameter count only.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, BOS, EOS, N_SPECIAL = 0, 1, 2, 3


# ----------------------------------------------------------------------------- data


def read_safetensors(path):
    """name -> numpy array (plain reader: the format is an 8-byte header size, a JSON
    header and raw little-endian data)."""
    dtypes = {"I64": np.int64, "U32": np.uint32, "F32": np.float32, "U8": np.uint8, "I32": np.int32}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return out


class World:
    """A prepared dataset plus its semantic ids, re-indexed to dense item ids."""

    def __init__(self, data_dir, tok_dir):
        h = read_safetensors(os.path.join(data_dir, "histories.safetensors"))
        self.offsets = h["offsets"].astype(np.int64)
        self.items = h["items"].astype(np.int64)
        with open(os.path.join(data_dir, "item_ids.txt")) as f:
            item_ids = [line.rstrip("\n") for line in f if line.strip()]
        with open(os.path.join(tok_dir, "manifest.json")) as f:
            self.sizes = json.load(f)["sizes"]
        self.levels = len(self.sizes)
        paths = {}
        with open(os.path.join(tok_dir, "codes.tsv")) as f:
            for line in f:
                iid, codes = line.rstrip("\n").split("\t")
                paths[iid] = [int(c) for c in codes.split(",")]
        self.codes = np.array([paths[i] for i in item_ids], dtype=np.int64)  # [n_items, levels]
        self.offs = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]) + N_SPECIAL
        self.tokens = self.codes + self.offs[None, :]  # [n_items, levels] token ids
        self.vocab = N_SPECIAL + sum(self.sizes)

    def n_users(self):
        return len(self.offsets) - 1

    def history(self, u):
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    def train_examples(self, min_history=1):
        """(user, pos) for pos in min_history..n-2 (leave-one-out: the last two items are
        validation and test; users with fewer than 3 items train on all of them)."""
        us, ps = [], []
        for u in range(self.n_users()):
            n = self.offsets[u + 1] - self.offsets[u]
            end = n - 2 if n >= 3 else n
            for p in range(min_history, end):
                us.append(u)
                ps.append(p)
        return np.array(us), np.array(ps)


def bucketed_order(lens, batch, window, rng):
    idx = rng.permutation(len(lens))
    for s in range(0, len(idx), batch * window):
        w = idx[s : s + batch * window]
        idx[s : s + batch * window] = w[np.argsort(lens[w], kind="stable")]
    full = len(idx) // batch
    order = rng.permutation(full)
    return [idx[b * batch : (b + 1) * batch] for b in order] + ([idx[full * batch :]] if len(idx) % batch else [])


def encoder_inputs(world, hists, n):
    """Token ids per level [levels, B, T], positions [B, T], valid mask [B, T]."""
    b = len(hists)
    hists = [h[max(0, len(h) - n) :] for h in hists]
    t = 1 + max((len(h) for h in hists), default=0)
    ids = np.full((world.levels, b, t), PAD, dtype=np.int64)
    ids[0, :, 0] = BOS
    pos = np.zeros((b, t), dtype=np.int64)
    valid = np.zeros((b, t), dtype=bool)
    valid[:, 0] = True
    for r, h in enumerate(hists):
        k = len(h)
        if k:
            ids[:, r, t - k :] = world.tokens[h].T
            pos[r, t - k :] = np.arange(n - k + 1, n + 1)
            valid[r, t - k :] = True
    return torch.from_numpy(ids), torch.from_numpy(pos), torch.from_numpy(valid)


def train_batch(world, us, ps, n):
    """Histories before pos; target = the item at pos + EOS; inputs = BOS + its codes."""
    hists = [world.history(u)[max(0, p - n) : p] for u, p in zip(us, ps)]
    tgt_items = np.array([world.history(u)[p] for u, p in zip(us, ps)])
    tok = world.tokens[tgt_items]  # [B, L]
    b = len(us)
    targets = np.concatenate([tok, np.full((b, 1), EOS)], axis=1)
    inputs = np.concatenate([np.full((b, 1), BOS), tok], axis=1)
    return encoder_inputs(world, hists, n), torch.from_numpy(inputs), torch.from_numpy(targets)


# ---------------------------------------------------------------------------- model


class RmsNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGlu(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.heads = heads

    def split(self, x):
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def kv(self, x):
        return self.split(self.k(x)), self.split(self.v(x))

    def attend(self, x, k, v, mask):
        """Explicit matmul / softmax (the composed ops ours uses), additive mask."""
        b, t, d = x.shape
        q = self.split(self.q(x))
        s = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(d // self.heads))
        if mask is not None:
            s = s + mask
        o = torch.softmax(s, -1) @ v
        return self.o(o.transpose(1, 2).reshape(b, t, d))

    def attend_grouped(self, x, k, v, mask, group):
        """One query per row ([R,1,d]), consecutive `group` rows sharing a K/V row
        ([R/group,H,Tk,dh]): a user's beams over its encoder output, K/V never copied."""
        b, t, d = x.shape
        u, dh = b // group, d // self.heads
        q = self.q(x).view(u, group, self.heads, dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(dh)) + mask
        o = torch.softmax(s, -1) @ v
        return self.o(o.transpose(1, 2).reshape(b, t, d))


class Moe(nn.Module):
    def __init__(self, d, experts, top_k, hidden, shared, bias_rate):
        super().__init__()
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList([SwiGlu(d, hidden) for _ in range(experts)])
        self.shared = SwiGlu(d, hidden) if shared else None
        self.top_k = top_k
        self.bias_rate = bias_rate
        self.register_buffer("bias", torch.zeros(experts))
        self.load = torch.zeros(experts, dtype=torch.long)

    def forward(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.router(x2), -1)
        with torch.no_grad():
            chosen = torch.topk(probs + self.bias, self.top_k, -1).indices  # [n, k]
        picked = probs.gather(1, chosen)
        gates = picked / picked.sum(-1, keepdim=True)
        out = self.shared(x2) if self.shared is not None else torch.zeros_like(x2)
        return self.dispatch(x2, chosen, gates, out).reshape(shape)

    @torch.compiler.disable
    def dispatch(self, x2, chosen, gates, out):
        """Each expert on its own tokens. Data-dependent sizes: left eager under
        torch.compile (tracing it recompiles for every new token count)."""
        flat = chosen.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=len(self.experts)).tolist()
        self.load += torch.tensor(counts)
        tok_of_slot = order // self.top_k
        gate_of_slot = gates.reshape(-1)[order]
        start = 0
        for e, m in enumerate(counts):
            if m == 0:
                continue
            toks = tok_of_slot[start : start + m]
            y = self.experts[e](x2.index_select(0, toks)) * gate_of_slot[start : start + m, None]
            out = out.index_add(0, toks, y)
            start += m
        return out

    @torch.no_grad()
    def update_bias(self):
        load = self.load.float()
        self.bias += self.bias_rate * torch.sign(load.mean() - load)
        self.load.zero_()


class EncLayer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.ffn = RmsNorm(d), Attention(d, heads), RmsNorm(d), SwiGlu(d, ffn)

    def forward(self, x, mask):
        h = self.norm1(x)
        k, v = self.attn.kv(h)
        x = x + self.attn.attend(h, k, v, mask)
        return x + self.ffn(self.norm2(x))


class DecLayer(nn.Module):
    def __init__(self, d, heads, moe):
        super().__init__()
        self.norm1, self.self_attn = RmsNorm(d), Attention(d, heads)
        self.norm2, self.cross_attn = RmsNorm(d), Attention(d, heads)
        self.norm3, self.moe = RmsNorm(d), Moe(d, **moe)

    def forward(self, x, past, causal, cross, enc_mask, group=None):
        h = self.norm1(x)
        k, v = self.self_attn.kv(h)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        x = x + self.self_attn.attend(h, k, v, causal)
        if group is None:
            x = x + self.cross_attn.attend(self.norm2(x), cross[0], cross[1], enc_mask)
        else:
            x = x + self.cross_attn.attend_grouped(self.norm2(x), cross[0], cross[1], enc_mask, group)
        return x + self.moe(self.norm3(x)), (k, v)


class OneRecTorch(nn.Module):
    def __init__(self, vocab, levels, d=128, heads=4, enc_layers=2, dec_layers=4, ffn_hidden=512,
                 history_len=20, max_session_items=5, experts=8, top_k=2, expert_hidden=256,
                 shared_expert=True, bias_rate=0.001):
        super().__init__()
        moe = dict(experts=experts, top_k=top_k, hidden=expert_hidden, shared=shared_expert, bias_rate=bias_rate)
        self.history_len = history_len
        self.enc_tok = nn.Embedding(vocab, d)
        self.enc_pos = nn.Embedding(history_len + 1, d)
        self.enc_layers = nn.ModuleList([EncLayer(d, heads, ffn_hidden) for _ in range(enc_layers)])
        self.enc_norm = RmsNorm(d)
        self.dec_tok = nn.Embedding(vocab, d)
        self.dec_pos = nn.Embedding(1 + max_session_items * levels, d)
        self.dec_layers = nn.ModuleList([DecLayer(d, heads, moe) for _ in range(dec_layers)])
        self.dec_norm = RmsNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.init_weights()

    def init_weights(self):
        """The init policy of src/nn/init.rs: embeddings N(0, 0.02), matrices N(0, 1/in)
        (halved for `o` and `down`), norms 1."""
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            if "tok" in name or "pos" in name:
                nn.init.normal_(p, 0.0, 0.02)
            else:
                std = (1.0 / p.shape[1]) ** 0.5
                nn.init.normal_(p, 0.0, std / 2 if name.endswith(".o.weight") or name.endswith(".down.weight") else std)

    def encode(self, ids, pos, valid):
        x = self.enc_pos(pos)
        for lv in range(ids.shape[0]):
            x = x + self.enc_tok(ids[lv])
        mask = torch.where(valid, 0.0, -1e9)[:, None, None, :]
        for layer in self.enc_layers:
            x = layer(x, mask)
        return self.enc_norm(x), mask

    def forward(self, enc_in, inputs):
        enc, enc_mask = self.encode(*enc_in)
        s = inputs.shape[1]
        x = self.dec_tok(inputs) + self.dec_pos.weight[:s]
        causal = torch.triu(torch.full((s, s), -1e9), 1)
        for layer in self.dec_layers:
            x, _ = layer(x, None, causal, layer.cross_attn.kv(enc), enc_mask)
        return self.head(self.dec_norm(x))

    def moe_layers(self):
        return [layer.moe for layer in self.dec_layers]


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def make_model(world, args):
    torch.manual_seed(args.seed)
    return OneRecTorch(world.vocab, world.levels)


def loss_fn(model, enc_in, inputs, targets):
    logits = model(enc_in, inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def optimizer(model, lr=1e-3, wd=0.05):
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "tok" not in n and "pos" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "tok" not in n and "pos" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.999), eps=1e-8)


# ------------------------------------------------------------------------- training


def run_train(world, args):
    model = make_model(world, args)
    opt = optimizer(model)
    step_loss = loss_fn
    if args.compile:
        torch._dynamo.config.cache_size_limit = 64
        step_loss = torch.compile(loss_fn, dynamic=True)
    us, ps = world.train_examples()
    lens = np.minimum(ps, model.history_len)
    batches = bucketed_order(lens, args.batch, 50, np.random.default_rng(args.seed))
    n = model.history_len

    def step(idx):
        enc_in, inputs, targets = train_batch(world, us[idx], ps[idx], n)
        loss = step_loss(model, enc_in, inputs, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for m in model.moe_layers():
            m.update_bias()
        return loss.item()

    t0 = time.perf_counter()
    for i in range(args.warmup):
        step(batches[i % len(batches)])
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ex, losses = 0, []
    for i in range(args.warmup, args.warmup + args.steps):
        b = batches[i % len(batches)]
        losses.append(step(b))
        ex += len(b)
    secs = time.perf_counter() - t0
    return {"mode": "compiled" if args.compile else "eager", "examples": ex, "steps": args.steps, "secs": secs,
            "ex_per_s": ex / secs, "warmup_steps": args.warmup, "warmup_secs": warm_s,
            "loss_first": losses[0], "loss_last": losses[-1]}


# ----------------------------------------------------------------------- generation


class Trie:
    """Per depth d, child[d][node, code] = the node after `code` (-1: not a catalogue
    prefix); the last level maps to dense item ids."""

    def __init__(self, world):
        self.child = []
        prefixes = {(): 0}
        for d in range(world.levels):
            nxt = {}
            table = np.full((len(prefixes), world.sizes[d]), -1, dtype=np.int64)
            for i, path in enumerate(world.codes.tolist()):
                p, q = tuple(path[:d]), tuple(path[: d + 1])
                if d + 1 == world.levels:
                    table[prefixes[p], path[d]] = i
                else:
                    table[prefixes[p], path[d]] = nxt.setdefault(q, len(nxt))
            self.child.append(torch.from_numpy(table))
            prefixes = nxt


@torch.no_grad()
def beam_search(model, world, trie, hists, beam, top, cross_per_user=False):
    """Constrained beam search for one item per user: [U, top] item ids, scores.
    `cross_per_user`: keep cross K/V one row per user (each user's beams attend to it in
    place, as `onerec` does) instead of re-indexing them by parent row every step."""
    u = len(hists)
    enc, enc_mask = model.encode(*encoder_inputs(world, hists, model.history_len))
    cross = [layer.cross_attn.kv(enc) for layer in model.dec_layers]
    past = [None] * len(model.dec_layers)
    rows_per_user = 1
    scores = torch.zeros(u, 1)
    nodes = torch.zeros(u, 1, dtype=torch.long)
    tokens = torch.full((u,), BOS, dtype=torch.long)
    for t in range(world.levels):
        x = model.dec_tok(tokens)[:, None, :] + model.dec_pos.weight[t]
        for i, layer in enumerate(model.dec_layers):
            group = rows_per_user if cross_per_user else None
            x, past[i] = layer(x, past[i], None, cross[i], enc_mask, group)
        lp = torch.log_softmax(model.head(model.dec_norm(x))[:, 0], -1)  # [R, V]
        k = world.sizes[t]
        lvl = lp[:, world.offs[t] : world.offs[t] + k].reshape(u, rows_per_user, k)
        child = trie.child[t][nodes]  # [U, r, K]
        cand = torch.where(child >= 0, scores[:, :, None] + lvl, float("-inf")).reshape(u, -1)
        # A small catalogue may have fewer candidates than beams: dead beams keep -inf.
        scores, flat = torch.topk(cand, min(beam if t + 1 < world.levels else top, cand.shape[1]), -1)
        parent, code = flat // k, flat % k
        nodes = child.reshape(u, -1).gather(1, flat)
        if t + 1 == world.levels:
            return torch.where(scores > float("-inf"), nodes, -1), scores
        nodes = nodes.clamp(min=0)
        rows = (parent + torch.arange(u)[:, None] * rows_per_user).reshape(-1)
        if not cross_per_user:
            enc_mask = enc_mask.index_select(0, rows)
            cross = [(ck.index_select(0, rows), cv.index_select(0, rows)) for ck, cv in cross]
        past = [(pk.index_select(0, rows), pv.index_select(0, rows)) for pk, pv in past]
        tokens = (code + int(world.offs[t])).reshape(-1)  # the chosen token of level t
        rows_per_user = scores.shape[1]
    return nodes, scores


def test_histories(world, users):
    """The test split's histories (everything but the last item) of the first users."""
    return [world.history(u)[:-1] for u in range(min(users, world.n_users()))]


def write_histories(world, data_dir, users, out):
    """The same users for `onerec generate --histories`: `user_id item_id ...` in
    original ids, oldest first."""
    with open(os.path.join(data_dir, "user_ids.txt")) as f:
        user_ids = [line.rstrip("\n") for line in f if line.strip()]
    with open(os.path.join(data_dir, "item_ids.txt")) as f:
        item_ids = [line.rstrip("\n") for line in f if line.strip()]
    with open(out, "w") as f:
        for u, h in enumerate(test_histories(world, users)):
            f.write(" ".join([user_ids[u]] + [item_ids[i] for i in h]) + "\n")


def run_generate(world, args):
    model = make_model(world, args)
    model.eval()
    trie = Trie(world)
    # Test split: each user's history is everything but the last item.
    hists = test_histories(world, args.users)
    t0 = time.perf_counter()
    out = []
    for s in range(0, len(hists), args.batch_users):
        items, _ = beam_search(model, world, trie, hists[s : s + args.batch_users], args.beam, args.top,
                               args.cross_per_user)
        out.append(items)
    secs = time.perf_counter() - t0
    items = torch.cat(out)
    return {"mode": "eager", "cross_per_user": args.cross_per_user, "users": len(hists), "secs": secs, "users_per_s": len(hists) / secs,
            "items": int((items >= 0).sum())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["train", "generate", "params", "histories"])
    ap.add_argument("--out", help="histories: the file to write")
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--batch-users", type=int, default=64)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--cross-per-user", action="store_true",
                    help="generate: cross K/V one row per user (beams attend in place), as onerec")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = World(args.data, args.tokenizer)
    if args.what == "histories":
        write_histories(world, args.data, args.users, args.out)
        return 0
    if args.what == "params":
        res = {"params": count_params(make_model(world, args))}
    elif args.what == "train":
        res = run_train(world, args)
    else:
        res = run_generate(world, args)
    res.update({"what": args.what, "threads": args.threads, "torch": torch.__version__})
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    sys.exit(main())
