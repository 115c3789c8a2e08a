"""One retraining job: claim the requests, train a candidate, judge it against the
champion on the newest labelled data, register it, promote it only if it is better.

The job holds the single-flight lease from start to end, renewing it while it runs
and reports progress (:mod:`retrain.liveness`), and records a ``retrain_runs`` row
whatever happens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from retrain.data import ArchiveWindow, RetrainData, assemble, base_dataset
from retrain.lease import Lease, LeaseLost
from retrain.liveness import JobLiveness
from retrain.monitorable import unmonitorable
from retrain.recovery import recover
from retrain.unfinished import JobUnrecorded, UnfinishedJob, failure_reason
from watchkeeper import retrain_queue
from watchkeeper.classification import Classifier, ServedModel, classification_metrics
from watchkeeper.current_pointer import CurrentPointer
from watchkeeper.db.tables import retrain_runs
from watchkeeper.errors import WatchkeeperError
from watchkeeper.figures import amount
from watchkeeper.model import regression_metrics
from watchkeeper.progress import Stages
from watchkeeper.registry import ModelRegistry, Promotion, PromotionSettlement, RegisteredModel
from watchkeeper.retrain_options import RetrainOptions
from watchkeeper.retrain_status import UNCLAIMED_TRIGGER, RequestStatus, RunOutcome
from watchkeeper.schema import FeatureSchema
from watchkeeper.settings import Settings
from watchkeeper.task import Task, label_text
from watchkeeper.training import TrainingParams, train
from watchkeeper.version_metadata import DataWindow, ModelMetrics, VersionNotes, VersionStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatePolicy:
    """A candidate is promoted when its error on the holdout is below the champion's by
    ``margin`` (a fraction), its coverage lies in ``[min_coverage, max_coverage]`` or is
    no further from that band than the champion's on the same holdout, it predicts no
    NaN, its classes (a classifier's) and its schema are the champion's, and the
    monitor can fit its detectors on it (:mod:`retrain.monitorable`). The error is the
    MAE for a regression model and the log-loss for a classifier (a proper scoring
    rule: accuracy alone rewards a model that is right as often but sure of its
    mistakes); the coverage is the interval's or the prediction set's.

    Coverage is judged against the champion because under drift neither may reach the
    band: refusing a candidate at 8 % coverage keeps serving a champion at 0 %."""

    margin: float = 0.02
    min_coverage: float = 0.8
    max_coverage: float = 0.98

    def band(self) -> str:
        return f"[{self.min_coverage:.0%}, {self.max_coverage:.0%}]"

    def coverage_miss(self, coverage: float, *, accuracy: float | None = None) -> float:
        """How far ``coverage`` lies outside the band (0 inside it). A classifier's set
        always holds its predicted class, so its coverage is at least its ``accuracy``:
        coverage above the band that accuracy explains is no miss (a 99 %-accurate
        model's singleton sets cover 99 %, and cannot be made narrower)."""
        high = max(self.max_coverage, accuracy or 0.0)
        return max(self.min_coverage - coverage, coverage - high, 0.0)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class RunResult:
    run_id: int
    outcome: RunOutcome  # promoted, rejected, failed
    reason: str
    candidate_version: str | None
    champion_version: str | None


def decide(
    policy: GatePolicy,
    candidate: ModelMetrics,
    champion: ModelMetrics,
    *,
    candidate_predictions: np.ndarray,
    candidate_schema: FeatureSchema,
    champion_schema: FeatureSchema,
    task: Task = Task.REGRESSION,
    candidate_classes: Sequence[Any] = (),
    champion_classes: Sequence[Any] = (),
) -> Decision:
    """Whether the candidate replaces the champion, given both models' metrics on the
    same holdout (see :class:`GatePolicy`), and why. A classifier's candidate must have
    the champion's classes: the monitor, the dashboards and clients know those."""
    if not np.all(np.isfinite(candidate_predictions)):
        return Decision(False, "candidate predicts NaN or infinite values")
    if [label_text(c) for c in candidate_classes] != [label_text(c) for c in champion_classes]:
        return Decision(False, _class_difference(candidate_classes, champion_classes))
    differences = candidate_schema.differences(
        champion_schema, names=("the candidate", "the champion")
    )
    if differences:
        shown = "; ".join(differences[:10])
        more = f"; and {len(differences) - 10} more" if len(differences) > 10 else ""
        return Decision(
            False, f"candidate's feature schema differs from the champion's: {shown}{more}"
        )
    if task is Task.CLASSIFICATION:
        return _decide_classifier(policy, candidate, champion)
    coverage = _judge_coverage(
        policy, candidate.required("coverage"), champion.required("coverage")
    )
    if not coverage.promote:
        return coverage
    mae, champion_mae = candidate.required("mae"), champion.required("mae")
    needed = champion_mae * (1 - policy.margin)
    if not mae < needed:
        return Decision(
            False,
            f"MAE {amount(mae)} does not beat the champion's {amount(champion_mae)} "
            f"by {policy.margin:.0%} (needs < {amount(needed)})",
        )
    return Decision(
        True,
        f"MAE {amount(mae)} vs champion {amount(champion_mae)} "
        f"({mae / champion_mae - 1:+.1%}), {coverage.reason}",
    )


def _class_difference(candidate: Sequence[Any], champion: Sequence[Any]) -> str:
    theirs, ours = [label_text(c) for c in candidate], [label_text(c) for c in champion]
    parts = [
        f"only in the {who}: {', '.join(repr(c) for c in only[:10])}"
        + (f" and {len(only) - 10} more" if len(only) > 10 else "")
        for who, only in (
            ("candidate", [c for c in theirs if c not in ours]),
            ("champion", [c for c in ours if c not in theirs]),
        )
        if only
    ]
    return "candidate's classes differ from the champion's: " + (
        "; ".join(parts) or f"in another order ({', '.join(map(repr, theirs))})"
    )


def _decide_classifier(
    policy: GatePolicy, candidate: ModelMetrics, champion: ModelMetrics
) -> Decision:
    coverage = _judge_coverage(
        policy,
        candidate.required("set_coverage"),
        champion.required("set_coverage"),
        what="prediction set",
        accuracies=(candidate.required("accuracy"), champion.required("accuracy")),
    )
    if not coverage.promote:
        return coverage
    loss, champion_loss = candidate.required("log_loss"), champion.required("log_loss")
    needed = champion_loss * (1 - policy.margin)
    accuracy = (
        f"accuracy {candidate.required('accuracy'):.1%} vs {champion.required('accuracy'):.1%}"
    )
    if not loss < needed:
        return Decision(
            False,
            f"log-loss {loss:.4f} does not beat the champion's "
            f"{champion_loss:.4f} by {policy.margin:.0%} (needs < {needed:.4f}; "
            f"{accuracy})",
        )
    return Decision(
        True,
        f"log-loss {loss:.4f} vs champion {champion_loss:.4f} "
        f"({loss / champion_loss - 1:+.1%}), {accuracy}, "
        f"{coverage.reason}",
    )


def _judge_coverage(
    policy: GatePolicy,
    candidate: float,
    champion: float,
    *,
    what: str = "interval",
    accuracies: tuple[float, float] | None = None,
) -> Decision:
    """Coverage in the band, or no further from it than the champion's on the same
    holdout; the reason says which. ``accuracies`` (a classifier's, the candidate's and
    the champion's) lift the band's top to what each one's accuracy explains."""
    ours, theirs = accuracies or (None, None)
    miss = policy.coverage_miss(candidate, accuracy=ours)
    if miss == 0:
        explained = (
            f" (above {policy.max_coverage:.0%}, within its accuracy {ours:.1%}: a set "
            "holds the predicted class)"
            if candidate > policy.max_coverage and ours is not None
            else ""
        )
        return Decision(
            True, f"{'set ' if what != 'interval' else ''}coverage {candidate:.1%}{explained}"
        )
    outside = f"{what} coverage {candidate:.1%} outside {policy.band()}"
    champion_miss = policy.coverage_miss(champion, accuracy=theirs)
    if miss <= champion_miss:
        than = "better than" if miss < champion_miss else "no worse than"
        return Decision(
            True, f"{outside} but {than} the champion's {champion:.1%} on the same holdout"
        )
    return Decision(False, f"{outside} and worse than the champion's {champion:.1%}")


def _classes(model: ServedModel) -> tuple[Any, ...]:
    return model.classes if isinstance(model, Classifier) else ()


def holdout_metrics(model: ServedModel, x: pd.DataFrame, y: np.ndarray) -> ModelMetrics:
    """``model``'s metrics on the holdout, for its task."""
    if isinstance(model, Classifier):
        return classification_metrics(y.tolist(), model.predict(x))
    return regression_metrics(y, model.predict(x))


def predicted_values(model: ServedModel, x: pd.DataFrame) -> np.ndarray:
    """What must be finite in a candidate's predictions: values or class probabilities."""
    if isinstance(model, Classifier):
        return model.predict(x).probabilities
    return model.predict(x).value


class RetrainJob:
    STAGES = 2  # for a caller's progress display: data, then training and judging

    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine,
        registry: ModelRegistry,
        *,
        first_request: int | None = None,
        stages: Stages | None = None,
        on_progress: Callable[[], None] | None = None,
        liveness: JobLiveness | None = None,
    ) -> None:
        """``on_progress`` is called each time the job renews its lease (the worker
        beats its liveness heartbeat: a long job is not a stuck one). ``liveness``
        receives the job's progress at each step (the worker's, for its metrics; by
        default one of the job's own): a job without progress for
        ``WATCHKEEPER_RETRAIN_STALL_SECONDS`` stops renewing its lease.

        The job trains as the requests it claims ask (their stored
        :class:`~watchkeeper.retrain_options.RetrainOptions`); ``first_request`` is the
        one whose options it serves first, if still pending (the command line's own)."""
        self.settings = settings
        self.stages = stages or Stages.quiet()
        self.on_progress = on_progress
        self.liveness = liveness or JobLiveness(settings.retrain.stall_seconds)
        self.engine = engine
        self.registry = registry
        self.first_request = first_request
        # what a job that could not record its end names (retrain.unfinished)
        self._run_id: int | None = None
        self._candidate: str | None = None
        self.policy = GatePolicy(
            margin=settings.retrain.margin,
            min_coverage=settings.retrain.min_coverage,
            max_coverage=settings.retrain.max_coverage,
        )

    def run(self) -> RunResult | None:
        """Run one job for every pending request. ``None`` when another job holds the
        lease (the requests stay pending for the next one) or nothing is pending.

        With the lease taken, it first recovers what a job that died left running
        (:mod:`retrain.recovery`): those runs fail, their requests are this job's."""
        lease = Lease(self.engine, self.settings.retrain.lease_seconds)
        if not lease.acquire():
            log.info("a retraining job is already running; requests stay queued")
            return None
        self.liveness.start("recovering what a dead job left")
        failure: BaseException | None = None
        try:
            # renewed while the job runs, however long, as long as it makes progress: a
            # job outliving its lease would otherwise be joined by the next one, and a
            # hung one would keep the lease for ever. The recovery too: it reads the
            # registry, which may be slow, and a second job joining it would run at once.
            with lease.kept(on_renew=self.on_progress, alive=self.liveness.alive):
                recover(self.engine, lease, self.registry)
                self.liveness.beat("reading the queue")
                if not retrain_queue.pending(self.engine):
                    return None
                return self._run_locked(lease)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.liveness.finish()
            self._give_back(lease, failure)

    def _give_back(self, lease: Lease, failure: BaseException | None) -> None:
        """Release the lease. When the database refuses (its outage may be what ended
        the job), raise :class:`JobUnrecorded` naming what is left to record: the worker
        records it once the database answers, instead of the lease expiring minutes later
        and the run being taken for a dead job's."""
        if isinstance(failure, JobUnrecorded):
            return  # released when what it names is recorded, not before
        try:
            lease.release()
        except sa.exc.SQLAlchemyError as exc:
            reason = "" if failure is None else failure_reason(failure)
            unfinished = UnfinishedJob(lease.holder, self._run_id, reason, self._candidate)
            raise JobUnrecorded(unfinished, exc) from failure or exc

    def _run_locked(self, lease: Lease) -> RunResult:
        self.liveness.beat("recording the run and claiming the requests")
        started = datetime.now(UTC)
        with self.engine.begin() as connection:
            run_id = int(
                connection.execute(
                    retrain_runs.insert().values(
                        started_at=started,
                        trigger=UNCLAIMED_TRIGGER,
                        reason="",
                        request_ids=[],
                        data={},
                        outcome=RunOutcome.RUNNING,
                    )
                ).inserted_primary_key[0]
            )
        self._run_id = run_id
        claimed = retrain_queue.claim(self.engine, run_id, first=self.first_request)
        # claimed together because they ask for the same options (retrain_queue.claim)
        options = claimed[0].asked if claimed else RetrainOptions()
        if not options.empty:
            log.info("retraining run %d: training with %s", run_id, options.described())
        triggers = sorted({r.trigger for r in claimed})
        reason = "; ".join(dict.fromkeys(r.reason for r in claimed))
        self._update(
            run_id,
            trigger=",".join(triggers),
            reason=reason,
            request_ids=[r.id for r in claimed],
        )
        champion: RegisteredModel | None = None
        try:
            with self.stages.stage("loading the champion and the labelled data"):
                self.liveness.beat("loading the champion")
                # the pointer a promotion replaces: CURRENT moves from it or not at all
                served = self.registry.current()
                champion = self.registry.load(served.version)
                data = self._data(champion, options)
            with self.stages.stage("training a candidate and judging it against the champion"):
                params = options.params(champion.record.params)
                result = self._train_and_judge(
                    run_id, started, champion, served, data, lease, params
                )
        except Exception as exc:
            if isinstance(exc, WatchkeeperError):  # a reason a person can act on: one line
                log.warning("retraining run %d: failed (%s)", run_id, exc)
            else:
                log.exception("retraining run %d failed", run_id)
            try:
                self._record_failure(run_id, exc, champion)
            except sa.exc.SQLAlchemyError as unrecorded:  # the database is away
                unfinished = UnfinishedJob(
                    lease.holder,
                    run_id,
                    failure_reason(exc),
                    self._candidate,
                    requeue=isinstance(exc, LeaseLost),
                )
                raise JobUnrecorded(unfinished, unrecorded) from exc
            return RunResult(
                run_id, RunOutcome.FAILED, str(exc), None, champion.version if champion else None
            )
        retrain_queue.finish(self.engine, run_id, RequestStatus.DONE)
        return result

    def _record_failure(
        self, run_id: int, exc: BaseException, champion: RegisteredModel | None
    ) -> None:
        self._update(
            run_id,
            outcome=RunOutcome.FAILED,
            decision_reason=failure_reason(exc),
            champion_version=champion.version if champion else None,
            finished_at=datetime.now(UTC),
        )
        if isinstance(exc, LeaseLost):
            # Not trained, through no fault of theirs: pending again for the job that
            # holds the lease (whose recovery may have requeued them already).
            with self.engine.begin() as connection:
                retrain_queue.release_claims(connection, [run_id])
        else:
            retrain_queue.finish(self.engine, run_id, RequestStatus.FAILED)

    def _data(self, champion: RegisteredModel, options: RetrainOptions) -> RetrainData:
        self.liveness.beat("reading the original training data")
        base = base_dataset(champion, csv=options.data, target=options.target)
        self.liveness.beat("reading the labelled predictions")
        model = champion.model
        data = assemble(
            self.engine,
            base.dataset,
            model.schema,
            window_days=self.settings.retrain.window_days,
            holdout_fraction=self.settings.retrain.holdout_fraction,
            min_holdout=self.settings.retrain.min_holdout,
            archive=ArchiveWindow(
                self.settings.retention.archive, self.settings.retrain.archive_days
            ),
            classes=model.classes if isinstance(model, Classifier) else None,
        )
        left_out = data.description.left_out_summary()
        if left_out is not None:
            log.warning("retraining: %s", left_out)
        return replace(data, source=base.source)

    def _train_and_judge(
        self,
        run_id: int,
        started: datetime,
        champion: RegisteredModel,
        served: CurrentPointer,
        data: RetrainData,
        lease: Lease,
        params: TrainingParams,
    ) -> RunResult:
        task = champion.model.task  # a family keeps its task, whatever its new labels
        # the longest step, one call with no progress inside: the stall deadline must
        # exceed it (README, WATCHKEEPER_RETRAIN_STALL_SECONDS)
        self.liveness.beat("training a candidate")
        # the champion's ignored columns stay ignored: clients still send them
        schema = FeatureSchema.derive(
            data.training.frame, data.training.target, exclude=data.training.exclude
        ).keeping_ignored(champion.model.schema.ignored)
        trained = train(
            data.training,
            data.holdout,
            schema=schema,
            params=params,
            in_time_order=True,
            task=task,
        )
        window = DataWindow.model_validate(
            {
                **data.description.stored(),
                "dataset": data.training.name,
                "rows": len(data.training.frame),
                # the family's original window, however many retrains ago
                "base": champion.record.training_window.origin.stored(),
            }
        )
        trained = replace(trained, training_window=window, validation_window=None)
        self.liveness.beat("judging the candidate against the champion")
        holdout_x = data.holdout.frame[list(champion.model.schema.names)]
        holdout_y = data.holdout.frame[champion.model.schema.target].to_numpy()
        champion_metrics = holdout_metrics(champion.model, holdout_x, holdout_y)
        decision = decide(
            self.policy,
            trained.metrics,
            champion_metrics,
            candidate_predictions=predicted_values(trained.model, holdout_x),
            candidate_schema=trained.model.schema,
            champion_schema=champion.model.schema,
            task=task,
            candidate_classes=_classes(trained.model),
            champion_classes=_classes(champion.model),
        )
        if decision.promote:
            self.liveness.beat("fitting the monitor's detectors on the candidate")
            problem = unmonitorable(trained, self.settings.drift)
            if problem is not None:
                decision = Decision(False, f"{problem}; its gate had said: {decision.reason}")
        outcome = RunOutcome.PROMOTED if decision.promote else RunOutcome.REJECTED
        self.liveness.beat("registering the candidate")
        lease.check()  # a job that lost its lease to another registers nothing
        version = self.registry.register(
            trained,
            make_current=False,  # below, if this job still holds the lease
            status=VersionStatus.PROMOTED if decision.promote else VersionStatus.REJECTED,
            data_source=data.source,
            notes=VersionNotes(
                run_id=run_id,
                # recovery matches the version to its run by these, never by a clock
                run_started_at=started.isoformat(),
                reason=decision.reason,
                champion=champion.version,
                champion_metrics_on_holdout=champion_metrics,
            ),
        )
        self._candidate = version
        reason = decision.reason
        if decision.promote:
            left = self._serve(run_id, version, decision, lease, served)
            # Still holding the lease, no recovery can have served the candidate meanwhile:
            # it never was. Without it, the job that took over may have (its recovery
            # records this run, and this job's record is dropped).
            if left is not None and self._still_held(lease):
                outcome = RunOutcome.REJECTED
                reason = self._not_served(run_id, version, decision, left)
            elif left is not None:
                reason = f"{reason}; not made current: {left}"
        left_out = data.description.left_out_summary()
        if left_out is not None:
            reason = f"{reason}; {left_out}"
        self.liveness.beat("recording the outcome")
        self._update(
            run_id,
            outcome=outcome,
            decision_reason=reason,
            champion_version=champion.version,
            candidate_version=version,
            champion_metrics=champion_metrics.stored(),
            candidate_metrics=trained.metrics.stored(),
            data=data.description.stored(),
            finished_at=datetime.now(UTC),
        )
        log.info("retraining run %d: %s %s (%s)", run_id, outcome, version, reason)
        return RunResult(run_id, outcome, reason, version, champion.version)

    def _serve(
        self,
        run_id: int,
        version: str,
        decision: Decision,
        lease: Lease,
        served: CurrentPointer,
    ) -> str | None:
        """Make the promoted candidate ``version`` current, or withdraw it if this job
        lost its lease. Returns ``None`` when it is served, by this job or by the job
        that took the lease over, or why ``CURRENT`` was left as another writer put it
        (the caller records it as not served); raises :class:`LeaseLost` when it is
        withdrawn.

        Writing the candidate may take long enough (a slow or hung volume, a paused
        process) for the lease to pass to another job, which may have promoted a version
        of its own since: the lease is checked again first. And that job's recovery may
        be completing this very promotion while this job withdraws it: each settles the
        candidate in the registry before acting (:meth:`ModelRegistry.settle_promotion`,
        a compare-and-set), so whichever settles first decides, and the other acts on
        that decision rather than on what it read a moment before.

        Having won, the job may still pause (a GC pause, SIGSTOP, a slow disk) for longer
        than its lease before it moves ``CURRENT``, while the job that took the lease
        over serves the candidate and then promotes a newer one, or someone rolls back:
        ``CURRENT`` moves only from ``served``, the pointer the champion was loaded from
        (:meth:`ModelRegistry.move_current`), so a move made since stands."""
        try:
            lease.check()
        except LeaseLost as lost:
            settled = self._withdraw(run_id, version, decision, lost, by=lease.holder)
        else:
            settled = self.registry.settle_promotion(
                version, Promotion.SERVED, by=lease.holder, reason=f"promoted by run {run_id}"
            )
            if settled.by == lease.holder:
                return self._make_current(run_id, version, served)
        if settled.outcome is not Promotion.SERVED:  # only its own job withdraws a version
            raise LeaseLost(f"{version} was withdrawn by {settled.by}: {settled.reason}")
        log.warning(
            "retraining run %d: lost its lease; %s is served by the job that took it over (%s)",
            run_id,
            version,
            settled.by,
        )
        return None

    def _make_current(self, run_id: int, version: str, served: CurrentPointer) -> str | None:
        """Move ``CURRENT`` from ``served`` to ``version``; ``None`` when it names it
        now, else why it was left as another writer put it. Moves since that only
        wrote the champion again (rollbacks to the version current already, however
        many, :meth:`CurrentPointer.reaffirmed`) changed nothing served: the move is
        made from the last of them."""
        expected = served
        move = self.registry.move_current(version, expected=expected)
        while not move.moved and move.now.reaffirmed(expected):
            expected = move.now
            move = self.registry.move_current(version, expected=expected)
        if move.moved or move.now.version == version:  # or a recovery served it already
            return None
        left = (
            f"CURRENT was moved from {served.version} to {move.now.version} meanwhile "
            "(a rollback or a newer promotion), which stands"
        )
        log.warning("retraining run %d: %s not made current: %s", run_id, version, left)
        return left

    @staticmethod
    def _still_held(lease: Lease) -> bool:
        try:
            return lease.renew()
        except sa.exc.SQLAlchemyError:  # unknown: leave the candidate as registered
            return False

    def _not_served(self, run_id: int, version: str, decision: Decision, left: str) -> str:
        """Record the promoted candidate ``version``, which ``CURRENT`` was moved away
        from before it could be made current, as a withdrawn one is: ``rejected``, saying
        why. It was never served: a default rollback must not pick it, nor the run and
        ``watchkeeper_retrain_runs_total`` count it promoted. Returns the reason."""
        reason = f"not served: {left}; its gate had said: {decision.reason}"
        try:
            self.registry.set_status(version, VersionStatus.REJECTED, reason=reason)
        except (OSError, WatchkeeperError) as exc:  # the run still says so
            log.error("retraining run %d: cannot record %s as not served: %s", run_id, version, exc)
        return reason

    def _withdraw(
        self, run_id: int, version: str, decision: Decision, lost: LeaseLost, *, by: str
    ) -> PromotionSettlement:
        """Withdraw the candidate of a job that lost its lease between registering it as
        promoted and making it current: it is settled withdrawn, then recorded
        ``rejected``, saying why: it was never served, so a default rollback must not
        pick it nor a recovery serve it. Recorded before the run (the caller's), so that
        a job dying in between leaves a candidate that recovery records as rejected, not
        one it serves. Raises :class:`LeaseLost` once it is withdrawn; returns the
        settlement when the job that took the lease over settled it served first (its
        recovery completes the promotion: the candidate is served)."""
        reason = (
            f"not served: its job (run {run_id}) lost the retraining lease after registering "
            f"it and before making it current; its gate had said: {decision.reason}"
        )
        try:
            settled = self.registry.settle_promotion(
                version, Promotion.WITHDRAWN, by=by, reason=reason
            )
            if settled.outcome is Promotion.WITHDRAWN:
                self.registry.set_status(version, VersionStatus.REJECTED, reason=settled.reason)
        except (OSError, WatchkeeperError) as exc:  # the lease loss is still what stops it
            log.error("retraining run %d: cannot record %s as not served: %s", run_id, version, exc)
            raise lost from exc
        if settled.outcome is Promotion.WITHDRAWN:
            raise LeaseLost(
                f"{lost}; {version}, registered already, is recorded as rejected"
            ) from lost
        return settled

    def _update(self, run_id: int, **values: Any) -> None:
        """Update the run while it is still ``running``: a job that stalled, lost its
        lease and moved again finds its run already recovered by the job that took
        over, whose record stands."""
        with self.engine.begin() as connection:
            updated = connection.execute(
                retrain_runs.update()
                .where(retrain_runs.c.id == run_id, retrain_runs.c.outcome == RunOutcome.RUNNING)
                .values(**values)
            ).rowcount
        if updated == 0:
            log.warning(
                "retraining run %d was recovered by another job meanwhile (this one stalled "
                "or lost its lease); its record stands, this job's is dropped",
                run_id,
            )
