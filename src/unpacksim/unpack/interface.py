"""The implementation interface: one documented way for any unpacker to plug in.

An implementation is any object with a ``name``, a ``description``, ``world_options`` and a
``pull`` method (the :class:`Implementation` protocol).  ``pull(world, ctx, ref, opts)`` is a
SimPy process body: a generator, called with ``yield from`` inside a goroutine, that pulls
``ref`` from ``world.registry`` into ``world`` through the world's proxies (so every store call
is a scheduling point and a fault site) and returns a :class:`~unpacksim.unpack.results.PullResult`.

Implementations are found by registered name or by a ``module:attribute`` path
(:func:`resolve`).  The era presets (``seed``, ``v1.4``, ``v1.6``, ``v1.7``, ``v2.0``) are
registered implementations themselves (:mod:`unpacksim.unpack.reference`).  To plug in your
own::

    from unpacksim.unpack.interface import register
    from unpacksim.unpack.reference import ReferenceImplementation
    from unpacksim.unpack.eras import preset

    # a variant of the reference: v1.6 with the Stat skip removed
    register(ReferenceImplementation(preset("v1.6").but(stat_skip=False), name="v1.6-nostat"))

or write a class with the four members and pass ``"mypkg.mymodule:MyUnpacker"`` wherever an
implementation name is accepted (a class is instantiated without arguments).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from unpacksim.unpack.results import PullOptions, PullResult

if TYPE_CHECKING:
    from unpacksim.sim.context import Context
    from unpacksim.unpack.world import World

__all__ = [
    "Implementation",
    "ImplementationError",
    "PullProcess",
    "register",
    "registered",
    "resolve",
    "run_pull",
    "unregister",
]

#: What ``Implementation.pull`` returns: a generator for ``yield from`` returning a PullResult.
PullProcess = Generator[Any, Any, PullResult]


class ImplementationError(ValueError):
    """Misuse of the interface: an unknown name, a bad path, a non-conforming object."""


@runtime_checkable
class Implementation(Protocol):
    """An unpack/pull implementation the framework can drive.

    Attributes:
        name: the registry name (also what reports show).
        description: one line saying what it is.
        world_options: keyword arguments for ``World.create`` the implementation needs from
            the daemon it runs against (the reference presets return
            ``{"lease_on_exists": ...}``); ``{}`` if none.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def world_options(self) -> Mapping[str, Any]: ...

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> PullProcess:
        """Pull ``ref`` into ``world`` under ``ctx``; return the record of what happened.

        A pull that fails returns a PullResult carrying the error; it does not raise.  It
        must use only ``world``'s proxies (not the raw stores), so its steps are traced,
        scheduled and fault-injectable.
        """
        ...


_REGISTRY: dict[str, Implementation] = {}
_MEMBERS = ("name", "description", "world_options", "pull")


def _check_conforms(obj: object, origin: str) -> Implementation:
    missing = [m for m in _MEMBERS if not hasattr(obj, m)]
    if missing:
        raise ImplementationError(
            f"{origin} is not an Implementation: it lacks {missing}. An implementation needs "
            "`name`, `description`, `world_options` and `pull(world, ctx, ref, opts)` "
            "(see unpacksim.unpack.interface.Implementation)"
        )
    if not callable(getattr(obj, "pull")):  # noqa: B009 - attribute name checked above
        raise ImplementationError(f"{origin}.pull is not callable; it must be a method")
    name = getattr(obj, "name")  # noqa: B009
    if not isinstance(name, str) or not name:
        raise ImplementationError(f"{origin}.name must be a non-empty string, got {name!r}")
    assert isinstance(obj, Implementation)
    return obj


def register(impl: Implementation, *, replace: bool = False) -> Implementation:
    """Register ``impl`` under ``impl.name``; return it.

    Raises:
        ImplementationError: ``impl`` does not conform, or the name is taken (pass
            ``replace=True`` to replace on purpose).
    """
    _check_conforms(impl, repr(impl))
    if impl.name in _REGISTRY and not replace and _REGISTRY[impl.name] is not impl:
        raise ImplementationError(
            f"an implementation named {impl.name!r} is already registered; choose another "
            "name or pass replace=True"
        )
    _REGISTRY[impl.name] = impl
    return impl


def unregister(name: str) -> None:
    """Remove a registered implementation (no error if absent)."""
    _REGISTRY.pop(name, None)


def registered() -> list[str]:
    """The registered names, presets first, in registration order."""
    _load_builtins()
    return list(_REGISTRY)


def resolve(spec: str | Implementation) -> Implementation:
    """The implementation named by ``spec``: a registered name or ``module:attribute``.

    The attribute may be an implementation object, or a class or zero-argument factory that
    returns one.  An object that already conforms is returned unchanged.

    Raises:
        ImplementationError: unknown name, a module that does not import, a missing
            attribute, or an object that is not an implementation.
    """
    if not isinstance(spec, str):
        return _check_conforms(spec, repr(spec))
    _load_builtins()
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if ":" not in spec:
        raise ImplementationError(
            f"unknown implementation {spec!r}: registered are {list(_REGISTRY)}; "
            "or give a 'package.module:attribute' path"
        )
    return _load_path(spec)


def _load_path(spec: str) -> Implementation:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ImplementationError(
            f"bad implementation path {spec!r}: expected 'package.module:attribute'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImplementationError(
            f"cannot import module {module_name!r} of implementation path {spec!r}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImplementationError(
                f"module {module_name!r} has no attribute {attr!r} (implementation path {spec!r})"
            )
        obj = getattr(obj, part)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "pull")):
        factory: Callable[[], object] = obj
        try:
            obj = factory()
        except TypeError as exc:
            raise ImplementationError(
                f"{spec} is a class or factory but calling it without arguments failed: {exc}"
            ) from exc
    return _check_conforms(obj, spec)


def run_pull(
    impl: Implementation, world: World, ctx: Context, ref: str, opts: PullOptions | None = None
) -> PullProcess:
    """Run ``impl.pull`` and check what it hands back (use with ``yield from``).

    Raises:
        ImplementationError: ``pull`` did not return a generator, or the generator did not
            return a PullResult.
    """
    process = impl.pull(world, ctx, ref, opts if opts is not None else PullOptions())
    if not isinstance(process, Generator):
        raise ImplementationError(
            f"{impl.name}.pull returned {type(process).__name__}, not a generator: write it "
            "as a generator function (a SimPy process body) that returns a PullResult"
        )
    result = yield from process
    if not isinstance(result, PullResult):
        raise ImplementationError(
            f"{impl.name}.pull returned {type(result).__name__}, not a PullResult"
        )
    return result


def _load_builtins() -> None:
    # The presets live in reference.py, which imports the whole pipeline; import it lazily so
    # that this module stays importable on its own.
    importlib.import_module("unpacksim.unpack.reference")
