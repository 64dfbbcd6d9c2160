"""Games as fast Numba kernels, a registry of game specs, and Gymnasium environments.

``import envs`` imports every game folder under ``envs/`` (each registers its spec with the
registry, and with Gymnasium where it has an env: ``gymnasium.make("codepolicy/2048-v0")``),
so adding a game is adding a folder. Nothing here imports torch.
"""
import importlib
import pkgutil

from envs.play import DEFAULT_MAX_MOVES
from envs.registry import ApiFunction, GameSpec, UnknownGameError, get, names, register

# Every subpackage of envs is a game; importing it registers it.
for _game in pkgutil.iter_modules(__path__):
    if _game.ispkg:
        importlib.import_module(f"{__name__}.{_game.name}")

__all__ = ["ApiFunction", "DEFAULT_MAX_MOVES", "GameSpec", "UnknownGameError", "get", "names", "register"]
