"""Versioned model artifacts on disk, with an atomic ``current`` pointer.

Layout under the registry path::

    versions/v1/model.skops       the fitted pipeline (skops format, no pickle)
    versions/v1/reference.json    a sample of the training features (for the monitor)
    versions/v1/metadata.json     written last: a version without it is incomplete
    versions/.version.<writer>/   a version being written, renamed to its vN when whole
    versions/v2/settlement/       whether a promoted candidate is served or withdrawn,
                                  decided once (below)
    CURRENT                       the served version's name, and the move that wrote it
    moves/12/                     one per move of CURRENT, each a compare-and-set
                                  (:mod:`watchkeeper.current_pointer`)

``metadata.json`` records a SHA-256 for every artifact; loading refuses an artifact
whose bytes differ, and a pipeline holding types outside the trusted list.

What the registry guarantees to writers in several processes, on one host or on a
shared (ReadWriteMany) volume, rests on operations that are atomic on the server of any
such volume (local file systems, NFSv3/v4, CephFS): ``rename`` (readers see the old
``CURRENT`` or metadata or the new, never a mix; a version appears whole or not at all),
``mkdir`` (two registrations never get the same version, even one of an earlier
Watchkeeper during a rolling upgrade) and the refusal to rename a directory onto
a non-empty one (a promotion is settled once, :meth:`ModelRegistry.settle_promotion`;
``CURRENT`` moves only from the pointer its writer read,
:meth:`ModelRegistry.move_current`). No file lock is
taken: ``flock`` is not shared between nodes on every such volume (NFS mounted with
``nolock`` or ``local_lock``), a lock held by a paused process blocks every other
writer, and an NFS server releases the locks of a node that lost its lease (a network
partition) while their holder still acts under them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from watchkeeper.classification import Classifier, ServedModel, classes_of
from watchkeeper.current_pointer import (
    CURRENT_FILE,
    CurrentMove,
    CurrentPointer,
    UnreadableCurrent,
    move_current,
    move_made_ns,
    named_since,
    read_current,
)
from watchkeeper.errors import ArtifactIntegrityError, RegistryError, RollbackRefused
from watchkeeper.model import Model
from watchkeeper.parsed_models import UntrustedTypes, parsed_models
from watchkeeper.record_problems import problems
from watchkeeper.registry_writes import discard_leftovers, fsync_dir, private_name, write_atomic
from watchkeeper.task import Task, label_text
from watchkeeper.version_metadata import DataSource, VersionMetadata, VersionNotes, VersionStatus
from watchkeeper.version_reservations import (
    VERSION_NAME,
    discard_reservations,
    drop_needless_marks,
    highest_number,
    retired,
)

if TYPE_CHECKING:  # scikit-learn: the registry is read without it
    from watchkeeper.training import TrainedModel

log = logging.getLogger(__name__)

MODEL_FILE = "model.skops"
REFERENCE_FILE = "reference.json"
METADATA_FILE = "metadata.json"
SETTLEMENT_DIR = "settlement"
SETTLEMENT_PREFIX = f".{SETTLEMENT_DIR}."
SETTLEMENT_FILE = "settlement.json"
VERSION_PREFIX = ".version."
FORMAT_VERSION = 1

# Types skops does not trust by default that the Watchkeeper pipeline contains.
# Anything else in an artifact is refused unless the operator adds it to
# WATCHKEEPER_TRUSTED_TYPES.
DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "watchkeeper.encoding.TabularEncoder",
)

_VERSION_RE = VERSION_NAME

MetadataDocument = dict[str, Any]
"""``metadata.json`` as written: a free-form JSON object shown as is (``GET /model``,
``model show --json``). Code that reads a field reads :class:`VersionMetadata`."""


@dataclass(frozen=True)
class RegisteredModel:
    """A loaded version: the model, its metadata as written (``GET /model`` shows it)
    and the same metadata validated (:class:`VersionMetadata`)."""

    model: ServedModel
    metadata: MetadataDocument
    record: VersionMetadata

    @property
    def version(self) -> str:
        return self.model.version


class Promotion(StrEnum):
    """What became of a candidate registered as promoted, decided once
    (:meth:`ModelRegistry.settle_promotion`)."""

    SERVED = "served"
    """It is, or is to be, made current (by its job, or by the recovery of a job that
    died before it could)."""
    WITHDRAWN = "withdrawn"
    """Its job lost its lease before serving it: it is recorded ``rejected``, never made
    current."""


class PromotionSettlement(BaseModel):
    """``versions/<v>/settlement/settlement.json``: the one decision that stands on a
    promoted candidate, and who took it (a lease holder)."""

    model_config = ConfigDict(frozen=True)

    outcome: Promotion
    by: str
    reason: str
    settled_at: datetime


class CurrentMoved(RegistryError):
    """``CURRENT`` was moved by another writer between the moment this one read it and
    the moment it would have moved it: nothing was changed."""

    status_code = 409
    code = "current_moved"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class MetadataStamp:
    """A version's metadata file as it is on disk now, not what it says: a change
    means it was written again (:meth:`ModelRegistry.version_stamps`)."""

    inode: int
    size: int
    mtime_ns: int


class ModelRegistry:
    def __init__(self, root: Path, *, trusted_types: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.trusted_types = frozenset((*DEFAULT_TRUSTED_TYPES, *trusted_types))

    @property
    def _versions_dir(self) -> Path:
        return self.root / "versions"

    # -- reading ---------------------------------------------------------------

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self._versions_dir.is_dir():
            return []
        found = []
        for entry in self._versions_dir.iterdir():
            match = _VERSION_RE.fullmatch(entry.name)
            if match and (entry / METADATA_FILE).is_file():
                found.append((int(match.group(1)), entry.name))
        return [name for _, name in sorted(found)]

    def version_stamps(self) -> dict[str, MetadataStamp]:
        """Complete versions, oldest first, each with its metadata file's stamp: what
        a reader keeping what it read of their metadata compares, to read again only a
        version registered, removed or rewritten since (:meth:`set_status` and every
        write replace the file: a new inode). A stat each, no read."""
        if not self._versions_dir.is_dir():
            return {}
        found = []
        for entry in self._versions_dir.iterdir():
            match = _VERSION_RE.fullmatch(entry.name)
            if not match:
                continue
            try:
                stat = (entry / METADATA_FILE).stat()
            except (FileNotFoundError, NotADirectoryError):  # incomplete, or removed
                continue
            if S_ISREG(stat.st_mode):  # as versions(): a complete version
                stamp = MetadataStamp(stat.st_ino, stat.st_size, stat.st_mtime_ns)
                found.append((int(match.group(1)), entry.name, stamp))
        return {name: stamp for _, name, stamp in sorted(found)}

    def current_version(self) -> str | None:
        """The version ``CURRENT`` names; raises :class:`UnreadableCurrent` if it is
        there but is no pointer."""
        return self.current().version

    def current(self) -> CurrentPointer:
        """What ``CURRENT`` names and the move that wrote it: what a writer that decides
        on it passes to :meth:`move_current`. Raises :class:`UnreadableCurrent` (naming
        the file and what is wrong with it) if it is there but is no pointer."""
        return read_current(self.root)

    def current_written_since(self, version: str, pointer: CurrentPointer) -> bool:
        """Whether ``CURRENT``, read as ``pointer``, was written after ``version`` was
        registered: by its own registration, a rollback or a later promotion. Compares
        the modification times of ``CURRENT`` and of the version's metadata (the last
        file a registration writes before ``CURRENT``) on the registry's own volume, not
        two clocks; a tie counts as written since (a coarse file system).

        A pointer that only reaffirms an earlier move (rollbacks to the version current
        already, :attr:`CurrentPointer.reaffirms`) changed nothing served: it counts
        from when the move it reaffirms was made
        (:func:`~watchkeeper.current_pointer.move_made_ns`), or, when that cannot be
        told (a ``CURRENT`` once written by hand), from its own write, as any other."""
        written = None
        if pointer.problem is None and pointer.reaffirms is not None:
            written = move_made_ns(self.root, pointer.reaffirms)
        if written is None:
            try:
                written = (self.root / CURRENT_FILE).stat().st_mtime_ns
            except FileNotFoundError:
                return False
        return written >= (self._version_dir(version) / METADATA_FILE).stat().st_mtime_ns

    def served_since_registered(self, version: str) -> bool | None:
        """Whether ``CURRENT`` has named ``version`` at any moment since it was
        registered, whatever names it now (a rollback since); ``None`` when the moves'
        history cannot tell (:func:`~watchkeeper.current_pointer.named_since`). A
        promotion settled served is not one made: its job may have died before moving
        ``CURRENT``. Dated by its model file, written before it was registered and never
        after (its metadata is rewritten by :meth:`set_status`)."""
        try:
            since = (self._version_dir(version) / MODEL_FILE).stat().st_mtime_ns
        except OSError:  # its model file gone: when it was registered cannot be told
            return None
        return named_since(self.root, version, since)

    def metadata(self, version: str) -> MetadataDocument:
        """The version's metadata as written (a JSON object; anything else is refused),
        to show; to read a field, use :meth:`record`."""
        path = self._version_dir(version) / METADATA_FILE
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise RegistryError(f"model version {version!r} is not registered") from exc
        except OSError as exc:
            raise RegistryError(f"metadata of {version!r} cannot be read: {exc}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactIntegrityError(f"metadata of {version!r} is not valid JSON") from exc
        if not isinstance(raw, dict):
            VersionMetadata.parse(version, raw)  # raises its one-line error
        return raw

    def record(self, version: str) -> VersionMetadata:
        """The version's metadata validated; malformed metadata is one
        :class:`ArtifactIntegrityError` naming every problem."""
        return VersionMetadata.parse(version, self.metadata(version))

    def promotion_settlement(self, version: str) -> PromotionSettlement | None:
        """Whether the promoted ``version`` was settled served or withdrawn, by whom and
        why; ``None`` while nobody has (:meth:`settle_promotion`)."""
        path = self._version_dir(version) / SETTLEMENT_DIR / SETTLEMENT_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"settlement of {version!r} cannot be read: {exc}") from exc
        try:
            return PromotionSettlement.model_validate_json(raw)
        except ValidationError as exc:
            raise ArtifactIntegrityError(
                f"settlement of {version!r} is malformed: {problems(exc, whole='settlement')}"
            ) from exc

    def load(self, version: str | None = None) -> RegisteredModel:
        """Load ``version`` (default: current), checking its metadata's shape and every
        artifact's SHA-256."""
        version = version or self.current_version()
        if version is None:
            raise RegistryError(f"no model is registered as current in {self.root}")
        meta = self.metadata(version)
        record = VersionMetadata.parse(version, meta)
        blob = self._read_verified(version, MODEL_FILE, record)
        sha256 = record.artifacts[MODEL_FILE].sha256  # the blob's, just checked
        try:
            pipeline = parsed_models.pipeline(sha256, blob, self.trusted_types)
        except UntrustedTypes as exc:
            raise ArtifactIntegrityError(
                f"model {version!r} contains untrusted types {exc.refused}; "
                "add them to WATCHKEEPER_TRUSTED_TYPES only if you trust their source"
            ) from None
        except Exception as exc:  # skops raises a variety of errors on bad input
            raise ArtifactIntegrityError(f"model {version!r} cannot be loaded: {exc}") from exc
        model = _served_model(pipeline, record, version)
        return RegisteredModel(model=model, metadata=meta, record=record)

    def reference(self, version: str) -> pd.DataFrame:
        """The version's reference sample of training features, typed by its schema."""
        record = self.record(version)
        raw = json.loads(self._read_verified(version, REFERENCE_FILE, record))
        frame = pd.DataFrame(raw["data"], columns=raw["columns"])
        schema = record.feature_schema
        for feature in schema.features:
            frame[feature.name] = frame[feature.name].astype(
                "float64" if feature.is_numeric else "object"
            )
        return frame

    # -- writing ---------------------------------------------------------------

    def register(
        self,
        trained: TrainedModel,
        *,
        make_current: bool = True,
        status: VersionStatus = VersionStatus.REGISTERED,
        notes: VersionNotes | None = None,
        data_source: DataSource | None = None,
    ) -> str:
        """Store ``trained`` as the next version; optionally point ``current`` at it.

        ``status`` says what became of it (``registered`` by hand, ``promoted`` or
        ``rejected`` by a retraining job); ``notes`` record why. ``data_source`` is where
        its original training data lives, for retraining jobs to read it again."""
        self._versions_dir.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then renamed to its version: a writer
        # killed mid-way (kill -9 while writing the model) leaves no partial versions/vN,
        # only its private directory, which the next registration discards.
        staging = self._versions_dir / private_name(VERSION_PREFIX)
        staging.mkdir()
        try:
            # first: the private directories of dead writers say whose reservations were
            discard_reservations(self._versions_dir, VERSION_PREFIX, reference=staging)
            discard_leftovers(self._versions_dir, VERSION_PREFIX, reference=staging)
            import skops.io as sio  # as in load: only when a model is written

            model_blob = sio.dumps(trained.model.pipeline)
            reference_blob = trained.reference.to_json(orient="split", index=False).encode()
            artifacts = {}
            for name, blob in ((MODEL_FILE, model_blob), (REFERENCE_FILE, reference_blob)):
                write_atomic(staging / name, blob)
                artifacts[name] = {"sha256": _sha256(blob), "bytes": len(blob)}
            metadata: MetadataDocument = {
                "format": FORMAT_VERSION,
                "version": "",  # the name it is published under (_publish)
                "created_at": datetime.now(UTC).isoformat(),
                "training_window": trained.training_window.stored(),
                "validation_window": (
                    trained.validation_window.stored() if trained.validation_window else None
                ),
                "metrics": trained.metrics.stored(),
                "params": trained.params.to_dict(),
                **_task_metadata(trained.model),
                "schema": trained.model.schema.to_dict(),
                "reference_rows": len(trained.reference),
                "artifacts": artifacts,
                "status": VersionStatus(status).value,
                "notes": notes.stored() if notes is not None else {},
                "data_source": data_source.model_dump() if data_source is not None else None,
            }
            version = self._publish(staging, metadata)
            drop_needless_marks(self._versions_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it was renamed
        if make_current:
            self.set_current(version)
        return version

    def set_status(self, version: str, status: VersionStatus, *, reason: str) -> None:
        """Record what became of ``version`` after it was registered: its ``status``, and
        ``reason`` as its notes' reason. Only the metadata is rewritten (atomically);
        its artifacts and their hashes are untouched."""
        metadata = self.metadata(version)
        metadata["status"] = VersionStatus(status).value
        metadata["notes"] = {**(metadata.get("notes") or {}), "reason": reason}
        VersionMetadata.parse(version, metadata)  # never write what cannot be read back
        path = self._version_dir(version) / METADATA_FILE
        write_atomic(path, json.dumps(metadata, indent=2).encode())

    def settle_promotion(
        self, version: str, outcome: Promotion, *, by: str, reason: str
    ) -> PromotionSettlement:
        """Decide whether the promoted candidate ``version`` is served or withdrawn, once
        for every writer in every process: a compare-and-set from unsettled. Returns the
        settlement that stands: this one when it came first (its ``by`` is the caller's),
        else the earlier one, which the caller must act on instead of its own.

        A job that lost its lease withdraws its candidate while the job that took the
        lease over may be completing its promotion: each settles first and acts after
        (moves ``CURRENT``, or records the version ``rejected``), so the loser of the two
        sees the winner's decision and neither acts on a status it read a moment before.

        The settlement is written whole into a private directory which is then renamed
        to ``settlement/``: a rename onto an existing, non-empty directory fails, on a
        local file system and on an NFS or CephFS server alike, and a reader sees the
        whole settlement or none. (A hard link would do on most volumes, but not on all
        that the registry's ``rename``-based writes already work on.) A writer killed
        in between leaves its private ``.settlement.*`` directory, which nothing reads:
        each settlement removes those of the version's writers that are dead
        (:func:`~watchkeeper.registry_writes.discard_leftovers`), never one a live writer
        may still rename."""
        directory = self._version_dir(version)
        if not (directory / METADATA_FILE).is_file():
            raise RegistryError(f"model version {version!r} is not registered")
        mine = PromotionSettlement(
            outcome=outcome, by=by, reason=reason, settled_at=datetime.now(UTC)
        )
        staging = directory / private_name(SETTLEMENT_PREFIX)
        staging.mkdir()
        try:
            write_atomic(staging / SETTLEMENT_FILE, mine.model_dump_json(indent=2).encode())
            # the private directory just written dates the others
            discard_leftovers(directory, SETTLEMENT_PREFIX, reference=staging)
            try:
                os.rename(staging, directory / SETTLEMENT_DIR)
            except OSError as exc:
                # settled already (EEXIST, ENOTEMPTY), or, over NFS, a retried rename of
                # ours whose first reply was lost (ENOENT): what stands says which
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOENT):
                    raise RegistryError(f"cannot settle {version!r}: {exc}") from exc
            else:
                fsync_dir(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it was renamed
        standing = self.promotion_settlement(version)
        if standing is None:
            raise RegistryError(f"cannot settle {version!r}: no settlement was written")
        return standing

    def move_current(self, version: str, *, expected: CurrentPointer) -> CurrentMove:
        """Point ``CURRENT`` at ``version`` only if it still holds ``expected``, the
        pointer the caller read and decided on (:meth:`current`): a compare-and-set
        (:mod:`watchkeeper.current_pointer`). When another writer moved it in between
        (a rollback, a promotion, even to the same version), nothing is changed and the
        result says what ``CURRENT`` names; however long the caller paused, it never
        writes over a move it did not see."""
        if version not in self.versions():
            raise RegistryError(f"model version {version!r} is not registered")
        return move_current(self.root, version, expected=expected)

    def set_current(self, version: str) -> None:
        """Point ``CURRENT`` at ``version``, from whatever it names now; raises
        :class:`CurrentMoved` if another writer moves it at the same moment."""
        expected = self.current()
        move = self.move_current(version, expected=expected)
        if not move.moved:
            raise CurrentMoved(
                f"CURRENT was moved to {move.now.version} by another writer while this one "
                f"pointed it at {version}: nothing was changed"
            )

    def rollback(
        self, version: str | None = None, *, force: bool = False
    ) -> tuple[str | None, str]:
        """Point ``current`` at ``version``, or by default at the newest earlier version
        that retraining did not reject and that did not fail. A version that retraining
        rejected or that failed is refused unless ``force``. Returns (previous, new).

        A rollback to a named version also repairs a ``CURRENT`` that is no pointer
        (:class:`UnreadableCurrent`), with or without ``force``: nothing it names is
        served to protect, and a rollback is the operator's way out (``previous`` is then
        ``None``). A default rollback is refused then: "earlier" than an unknown version
        means nothing.

        ``CURRENT`` is moved only from the version the rollback was decided on: if a
        promotion (or another rollback) moves it meanwhile, :class:`CurrentMoved` is
        raised and nothing is changed, for the operator to look again. Once made, a
        rollback stands: a job or a recovery that decided on the pointer before it does
        not move ``CURRENT`` (:meth:`move_current`).

        A rollback to the version current already (``previous`` is then ``version``)
        changes nothing served: it writes ``CURRENT`` again, for servers that refused
        the version's files to load them again once restored, as a move that
        *reaffirms* the one that put the version there (:attr:`CurrentPointer.reaffirms`,
        the same for every rollback to it in a row), which a retraining job promoting
        meanwhile moves on from rather than giving way."""
        try:
            previous = self.current()
        except UnreadableCurrent as exc:
            if version is None:
                raise RegistryError(
                    f"{exc.message}: name the version to roll back to, which repairs it"
                ) from exc
            previous = exc.found
        if version is not None and not force:
            self._refuse_unfit(version)
        if version is None:
            version = self._newest_usable_before(previous.version)
        self.load(version)  # refuse to point at an artifact that would not load
        move = self.move_current(version, expected=previous)
        if not move.moved:
            raise CurrentMoved(
                f"CURRENT was moved from {previous.version} to {move.now.version} while "
                f"rolling back to {version}: nothing was changed; check `watchkeeper model "
                "list` and roll back again"
            )
        return previous.version, version

    # -- internals -------------------------------------------------------------

    def _newest_usable_before(self, previous: str | None) -> str:
        versions = self.versions()
        earlier = versions[: versions.index(previous)] if previous in versions else versions
        for version in reversed(earlier):
            try:
                unfit = self.record(version).status.unfit
            except RegistryError as exc:  # damaged metadata: not a version to serve
                log.warning("rollback skips %s: %s", version, exc)
                continue
            if not unfit:
                return version
        if previous is None:  # an empty registry, or no CURRENT yet
            raise RegistryError("no model is current and no usable version is registered")
        raise RegistryError(f"no earlier usable version to roll back to from {previous}")

    def _refuse_unfit(self, version: str) -> None:
        record = self.record(version)
        status = record.status
        if not status.unfit:
            return
        reason = record.notes.reason
        why = f": {' '.join(reason.split())}" if reason else ""
        raise RollbackRefused(
            f"refusing to put {version} into production: retraining {status} it{why}"
        )

    def _version_dir(self, version: str) -> Path:
        if not _VERSION_RE.fullmatch(version):
            shown = version if len(version) <= 40 else f"{version[:40]}…"
            raise RegistryError(
                f"{shown!r} is not a version name (expected v<number>, at most 18 digits)"
            )
        return self._versions_dir / version

    def _publish(self, staging: Path, metadata: MetadataDocument) -> str:
        """Rename the version written whole in ``staging`` to the next free ``vN``, its
        metadata naming it; returns the name.

        The number is first reserved with ``mkdir`` (atomic: one writer gets each; one
        that finds it taken takes the next), then ``staging`` is renamed onto that
        reservation, empty and this writer's own. Renaming onto the next free ``vN``
        alone is not enough: a directory renamed onto an *empty* one replaces it, and a
        registration by an earlier Watchkeeper (still running in another process during
        a rolling upgrade) reserves ``vN`` with ``mkdir`` and writes into it afterwards,
        so both would have written the same version. A writer killed between the two
        leaves an empty ``vN``: :meth:`versions` does not list it, later registrations
        skip its number, and the first once no writer can still publish into it removes
        it, its number never given again (:mod:`watchkeeper.version_reservations`)."""
        # past every number given, even one whose empty reservation was removed
        n = highest_number(self._versions_dir.iterdir()) + 1
        while True:
            version = f"v{n}"
            target = self._versions_dir / version
            document = json.dumps({**metadata, "version": version}, indent=2).encode()
            write_atomic(staging / METADATA_FILE, document)  # written last: complete
            try:
                target.mkdir()
            except FileExistsError:
                n += 1  # reserved by another writer, or published
                continue
            if retired(self._versions_dir, version):
                # a dead writer's reservation of this number, removed since this one
                # listed the numbers: given once already, not again
                target.rmdir()
                n += 1
                continue
            try:
                os.rename(staging, target)
            except OSError as exc:
                # a writer that renames without reserving (the Watchkeeper before this
                # one) took the reservation: it is theirs now
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    n += 1
                    continue
                # over NFS, a retried rename of ours whose first reply was lost
                if exc.errno == errno.ENOENT and self._holds(version, document):
                    return version
                raise RegistryError(f"cannot register {version}: {exc}") from exc
            fsync_dir(self._versions_dir)
            return version

    def _holds(self, version: str, document: bytes) -> bool:
        try:
            return (self._versions_dir / version / METADATA_FILE).read_bytes() == document
        except OSError:
            return False

    def _read_verified(self, version: str, name: str, record: VersionMetadata) -> bytes:
        path = self._version_dir(version) / name
        artifact = record.artifacts.get(name)
        if artifact is None:
            raise ArtifactIntegrityError(f"metadata of {version!r} has no hash for {name}")
        expected = artifact.sha256
        try:
            blob = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactIntegrityError(f"{name} of model {version!r} is missing") from exc
        except OSError as exc:
            raise ArtifactIntegrityError(
                f"{name} of model {version!r} cannot be read: {exc}"
            ) from exc
        actual = _sha256(blob)
        if actual != expected:
            raise ArtifactIntegrityError(
                f"{name} of model {version!r} has SHA-256 {actual[:12]}…, "
                f"expected {expected[:12]}… as registered: refusing to load it"
            )
        return blob


def _task_metadata(model: ServedModel) -> MetadataDocument:
    """What the version's task needs stored beside the model: the interval, or the
    classes, prediction set and confidence map."""
    if isinstance(model, Classifier):
        return {
            "task": str(model.task),
            "classes": list(model.classes),
            "prediction_set": asdict(model.prediction_set),
            "confidence_calibration": asdict(model.calibration),
        }
    return {"task": str(model.task), "interval": asdict(model.interval)}


def _served_model(pipeline: Any, record: VersionMetadata, version: str) -> ServedModel:
    if record.task is Task.CLASSIFICATION:
        assert record.prediction_set is not None and record.confidence_calibration is not None
        classes = classes_of(pipeline)
        if [label_text(c) for c in classes] != [label_text(c) for c in record.classes or ()]:
            raise ArtifactIntegrityError(
                f"model {version!r} predicts classes {list(classes)}, "
                f"its metadata names {list(record.classes or ())}"
            )
        return Classifier(
            pipeline=pipeline,
            prediction_set=record.prediction_set.spec(),
            calibration=record.confidence_calibration.spec(),
            classes=classes,
            schema=record.feature_schema,
            version=version,
        )
    assert record.interval is not None
    return Model(
        pipeline=pipeline,
        interval=record.interval.spec(),
        schema=record.feature_schema,
        version=version,
    )
