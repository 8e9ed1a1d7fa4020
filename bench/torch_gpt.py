"""torch_gpt.py: qat's GPT written in PyTorch, for the benchmarks that compare
against it, plus a reproduction of qat's batch sampler so that PyTorch can
train and evaluate on exactly qat's windows.

Model: token + learned position embeddings, pre-LN blocks (LayerNorm eps
1e-5, Linear C->3C with q|k|v, causal softmax attention, Linear C->C; MLP
C->4C, tanh GELU, 4C->C), final LayerNorm, LM head tied to wte. Init: normal
(0, 0.02) for 2-d weights, residual projections 0.02/sqrt(2 n_layer), biases
0, LayerNorm weights 1. Parameter names mirror qat's checkpoint names through
QAT_NAMES, so an HDF5 checkpoint loads with load_qat_checkpoint().

Llama: qat's model.arch llama: no position embeddings, RMSNorm (eps 1e-5),
q|k|v in one Linear without bias (grouped-query: n_kv_head key/value heads),
rotary embeddings on adjacent pairs of each head (theta 10000), a SwiGLU MLP
(gate|up in one Linear, then down), final RMSNorm, head tied to wte; the
same init as qat's (normal 0.02, residual projections scaled, norms 1).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln1 = nn.LayerNorm(C, eps=1e-5)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C, eps=1e-5)
        self.fc = nn.Linear(C, 4 * C)
        self.fc_out = nn.Linear(4 * C, C)
        self.linear = lambda x, lin: lin(x)  # replaced by quantized variants

    def forward(self, x, mask):
        b, n, C = x.shape
        hs = C // self.H
        q, k, v = self.linear(self.ln1(x), self.qkv).view(b, n, 3, self.H, hs).permute(2, 0, 3, 1, 4)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = F.softmax(att.masked_fill(mask[:n, :n], float("-inf")), dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(b, n, C)
        x = x + self.linear(y, self.proj)
        return x + self.linear(F.gelu(self.linear(self.ln2(x), self.fc), approximate="tanh"), self.fc_out)


class GPT(nn.Module):
    def __init__(self, V, T, C, L, H):
        super().__init__()
        self.V = V
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.blocks = nn.ModuleList([Block(C, H) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("proj.weight", "fc_out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)

    def forward(self, idx, targets):
        n = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:n]
        for blk in self.blocks:
            x = blk(x, self.mask)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.view(-1, self.V), targets.reshape(-1))


class RMSNorm(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):
    """Turns adjacent pairs (2i, 2i+1) of the last dim by the angles of their position."""
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class LlamaBlock(nn.Module):
    def __init__(self, C, H, HKV, hidden):
        super().__init__()
        self.H, self.HKV, self.hidden = H, HKV, hidden
        hs = C // H
        self.ln1 = RMSNorm(C)
        self.qkv = nn.Linear(C, C + 2 * HKV * hs, bias=False)
        self.proj = nn.Linear(C, C, bias=False)
        self.ln2 = RMSNorm(C)
        self.fc = nn.Linear(C, 2 * hidden, bias=False)
        self.fc_out = nn.Linear(hidden, C, bias=False)

    def forward(self, x, mask, cos, sin):
        b, n, C = x.shape
        hs = C // self.H
        q, k, v = self.qkv(self.ln1(x)).split([C, self.HKV * hs, self.HKV * hs], dim=-1)
        q = rope(q.view(b, n, self.H, hs).transpose(1, 2), cos, sin)
        k = rope(k.view(b, n, self.HKV, hs).transpose(1, 2), cos, sin)
        v = v.view(b, n, self.HKV, hs).transpose(1, 2)
        if self.HKV != self.H:
            k = k.repeat_interleave(self.H // self.HKV, dim=1)
            v = v.repeat_interleave(self.H // self.HKV, dim=1)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = F.softmax(att.masked_fill(mask[:n, :n], float("-inf")), dim=-1)
        x = x + self.proj(torch.matmul(att, v).transpose(1, 2).reshape(b, n, C))
        g, u = self.fc(self.ln2(x)).split([self.hidden, self.hidden], dim=-1)
        return x + self.fc_out(F.silu(g) * u)


class Llama(nn.Module):
    def __init__(self, V, T, C, L, H, HKV, hidden, theta=10000.0):
        super().__init__()
        self.V = V
        self.wte = nn.Embedding(V, C)
        self.blocks = nn.ModuleList([LlamaBlock(C, H, HKV, hidden) for _ in range(L)])
        self.ln_f = RMSNorm(C)
        hs = C // H
        ang = torch.arange(T, dtype=torch.float64)[:, None] * theta ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("proj.weight", "fc_out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            else:
                nn.init.ones_(p)

    def forward(self, idx, targets):
        n = idx.shape[1]
        x = self.wte(idx)
        for blk in self.blocks:
            x = blk(x, self.mask, self.cos[:n], self.sin[:n])
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.view(-1, self.V), targets.reshape(-1))


def qat_name(torch_name):
    """qat's checkpoint name of a parameter of GPT."""
    n = torch_name
    for a, b in ((".qkv.", ".attn.qkv."), (".proj.", ".attn.proj."), (".fc.", ".mlp.fc."), (".fc_out.", ".mlp.proj.")):
        n = n.replace(a, b)
    return "wte" if n == "wte.weight" else "wpe" if n == "wpe.weight" else n


def load_qat_checkpoint(model, h5file):
    """Copies every parameter from an open h5py qat checkpoint."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(h5file["params/" + qat_name(name)][()]))


class QatRng:
    """qat's generator (util/rng.c): splitmix64 seeding, xorshift64*."""
    M = (1 << 64) - 1

    def __init__(self, seed):
        z = (seed + 0x9E3779B97F4A7C15) & self.M
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.M
        z ^= z >> 31
        self.s = z or 0x2545F4914F6CDD1D

    def u32(self):
        x = self.s
        x ^= x >> 12
        x ^= (x << 25) & self.M
        x ^= x >> 27
        self.s = x
        return ((x * 0x2545F4914F6CDD1D) & self.M) >> 32

    def below(self, n):
        return (self.u32() * n) >> 32

    def batch(self, tokens, B, T):
        """qat's batch_sample: B windows of T+1 tokens from tokens (a 1-d LongTensor)."""
        starts = [self.below(len(tokens) - T) for _ in range(B)]
        w = torch.stack([tokens[s:s + T + 1] for s in starts])
        return w[:, :T], w[:, 1:]


def qat_eval_seed(seed):
    return (seed * 2654435761 + 97) & ((1 << 64) - 1)


def qat_train_seed(seed):
    return seed ^ 0x5DEECE66D


def full_split_loss(model, tokens, T, B):
    """qat's default validation loss (train.eval: full): the whole of tokens (a
    1-d LongTensor) as consecutive non-overlapping windows of T, the last one
    shorter, so every token but the first is predicted exactly once; the mean
    over all those tokens. Returns (loss, tokens scored)."""
    n = len(tokens) - 1
    whole, rest = n // T, n % T
    total, scored = 0.0, 0
    was = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, whole, B):
            k = min(B, whole - i)
            w = tokens[i * T:(i + k) * T + 1]
            x = w[:-1].view(k, T)
            y = w[1:].view(k, T)
            total += model(x, y).item() * k * T
            scored += k * T
        if rest:
            w = tokens[whole * T:]
            total += model(w[:-1].view(1, rest), w[1:].view(1, rest)).item() * rest
            scored += rest
    model.train(was)
    return total / scored, scored
