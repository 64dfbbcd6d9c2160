"""Games as fast Numba kernels, a registry of game specs, and Gymnasium environments.

``import envs`` registers the built-in games (2048) with the registry and with Gymnasium
(``gymnasium.make("codepolicy/2048-v0")``). Nothing here imports torch.
"""
from envs.registry import GameSpec, UnknownGameError, get, names, register

from envs import game2048  # noqa: E402,F401  (registers "2048")

__all__ = ["GameSpec", "UnknownGameError", "get", "names", "register", "game2048"]
