"""Soft actor-critic agent of IGBv2, with the structure IGB4MTL `methods/SAC_Agent.py` uses
(itself adapted from XinJingHao/SAC-Continuous-Pytorch).

- Actor: MLP state -> 128 -> 128 (ReLU after both), linear mu and log-std heads (log-std clamped
  to [-20, 2]); action a = K * softmax(u), u ~ N(mu, std) reparameterised. The log-prob keeps the
  tanh-squash correction although the squash is a softmax (inherited from the source).
- Twin Q critics (state+action) -> 128 -> 128 -> 1 and Polyak-averaged targets (tau 0.005).
- Adam (lr 3e-4) for actor, critics and log-temperature; gamma 0.99; adaptive temperature
  (init 0.2, target entropy -K); no terminal mask.
Everything (nets, optimizers, replay buffer, temperature) round-trips through `state_dict`.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal


def mlp(sizes, out_act) -> nn.Sequential:
    layers = []
    for j in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[j], sizes[j + 1]), nn.ReLU() if j < len(sizes) - 2 else out_act()]
    return nn.Sequential(*layers)


class ReplayBuffer(nn.Module):
    """FIFO buffer of (s, a, r, s') transitions; sampled uniformly with replacement."""

    def __init__(self, state_dim: int, action_dim: int, max_size: int):
        super().__init__()
        self.max_size = int(max_size)
        self.register_buffer("state", torch.zeros(self.max_size, state_dim))
        self.register_buffer("action", torch.zeros(self.max_size, action_dim))
        self.register_buffer("reward", torch.zeros(self.max_size, 1))
        self.register_buffer("next_state", torch.zeros(self.max_size, state_dim))
        self.ptr = 0
        self.size = 0

    def add(self, state, action, reward, next_state) -> None:
        self.state[self.ptr] = state
        self.action[self.ptr] = action
        self.reward[self.ptr] = reward
        self.next_state[self.ptr] = next_state
        self.ptr = (self.ptr + 1) % self.max_size
        self.size = min(self.size + 1, self.max_size)

    def sample(self, batch_size: int):
        idx = torch.randint(0, self.size, (batch_size,)).to(self.state.device)
        return self.state[idx], self.action[idx], self.reward[idx], self.next_state[idx]

    def get_extra_state(self):
        return {"ptr": self.ptr, "size": self.size}

    def set_extra_state(self, state):
        self.ptr, self.size = state["ptr"], state["size"]


class Actor(nn.Module):
    LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

    def __init__(self, state_dim: int, action_dim: int, hidden=(128, 128)):
        super().__init__()
        self.net = mlp([state_dim, *hidden], nn.ReLU)
        self.mu = nn.Linear(hidden[-1], action_dim)
        self.log_std = nn.Linear(hidden[-1], action_dim)
        self.action_dim = action_dim

    def forward(self, state, deterministic: bool = False, with_logprob: bool = True):
        h = self.net(state)
        mu = self.mu(h)
        std = self.log_std(h).clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).exp()
        dist = Normal(mu, std)
        u = mu if deterministic else dist.rsample()
        a = self.action_dim * torch.softmax(u, dim=-1)
        logp = None
        if with_logprob:
            logp = dist.log_prob(u).sum(-1, keepdim=True) - (
                2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1, keepdim=True)
        return a, logp


class TwinQ(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hidden=(128, 128)):
        super().__init__()
        self.q1 = mlp([state_dim + action_dim, *hidden, 1], nn.Identity)
        self.q2 = mlp([state_dim + action_dim, *hidden, 1], nn.Identity)

    def forward(self, state, action):
        sa = torch.cat([state, action], dim=-1)
        return self.q1(sa), self.q2(sa)


class SACAgent(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, *, lr: float = 3e-4, gamma: float = 0.99,
                 tau: float = 0.005, hidden=(128, 128), batch_size: int = 256, alpha: float = 0.2,
                 buffer_size: int = 10_000):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        self.actor = Actor(state_dim, action_dim, hidden)
        self.critic = TwinQ(state_dim, action_dim, hidden)
        self.critic_target = copy.deepcopy(self.critic)
        for p in self.critic_target.parameters():
            p.requires_grad_(False)
        # source: log_alpha is float64, target entropy = -dim(A)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha), dtype=torch.float64))
        self.target_entropy = -float(action_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
        self.gamma, self.tau, self.batch_size = float(gamma), float(tau), int(batch_size)
        self.alpha = float(alpha)  # source: the temperature in use lags one update behind log_alpha
        self.buffer = ReplayBuffer(state_dim, action_dim, int(buffer_size))
        self.updates = 0

    @torch.no_grad()
    def select_action(self, state: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor(state, deterministic, with_logprob=False)[0]

    def train_step(self, k: float) -> None:
        """One SAC update on a batch of int(batch_size * k / 2) transitions (IGB4MTL)."""
        with torch.enable_grad():
            s, a, r, s2 = self.buffer.sample(int(self.batch_size * (k / 2)))
            with torch.no_grad():
                a2, logp2 = self.actor(s2)
                q1t, q2t = self.critic_target(s2, a2)
                target = r + self.gamma * (torch.min(q1t, q2t) - self.alpha * logp2)
            q1, q2 = self.critic(s, a)
            q_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
            self.critic_opt.zero_grad()
            q_loss.backward()
            self.critic_opt.step()

            for p in self.critic.parameters():
                p.requires_grad_(False)
            a_new, logp = self.actor(s)
            q = torch.min(*self.critic(s, a_new))
            a_loss = (self.alpha * logp - q).mean()
            self.actor_opt.zero_grad()
            a_loss.backward()
            self.actor_opt.step()
            for p in self.critic.parameters():
                p.requires_grad_(True)

            alpha_loss = -(self.log_alpha * (logp.detach().double() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad()
            alpha_loss.backward()
            self.alpha_opt.step()
            self.alpha = float(self.log_alpha.detach().exp())

            with torch.no_grad():
                for p, pt in zip(self.critic.parameters(), self.critic_target.parameters()):
                    pt.mul_(1 - self.tau).add_(p, alpha=self.tau)
        self.updates += 1

    def get_extra_state(self):
        return {"actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(), "alpha": self.alpha, "updates": self.updates}

    def set_extra_state(self, state):
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.alpha, self.updates = state["alpha"], state["updates"]
