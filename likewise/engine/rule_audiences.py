"""Rule audiences (``dmp/custom_audience/rule/create/``): people defined by what they did.

A rule audience is stored as TikTok's ``rule_spec`` as sent. Each evaluation parses it again
into a :class:`~likewise.domain.rules.Plan` (so a source deleted since is noticed), compiles the
plan to SQL (:mod:`likewise.engine.rule_sql`) and runs it over the usable events wherever the
event state lives (``run_query``: the event worker), then stores the members as a new version.

Evaluation runs as a job (retried; a failure shows in ``get`` with its message). Without
``is_auto_refresh`` the first result is kept (a snapshot). Audiences with it are *live* once
evaluated (``watch`` given): a :class:`~likewise.engine.rule_live.LiveAudience` of the same plan
is handed to the event processing (``watch``), which reads the history and then applies every
event as it becomes usable; each change comes back through :meth:`RuleAudiences.on_live` and is
published at once (``Audiences.publish_live``), and stored as a new version at most every
``refresh_seconds``. Without ``watch`` they are evaluated again every ``refresh_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pyroaring import BitMap
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from likewise.background import Periodic
from likewise.domain.audience import Source, Status
from likewise.domain.rule_spec import parse_rule_audience, parse_rule_spec
from likewise.domain.rules import Plan, SourceKind
from likewise.engine.audiences import Audiences
from likewise.engine.rule_live import LiveAudience
from likewise.engine.rule_sql import plan_sql
from likewise.engine.sources import EventSources
from likewise.engine.sources import SourceKind as StoredKind
from likewise.errors import InvalidParameter
from likewise.store.db import Database
from likewise.store.models import Audience, AudienceRule, Job

log = logging.getLogger(__name__)

EVALUATE_RULE = "EVALUATE_RULE"
EVENTS_RELATION = "usable_events"  # what EventIntake.members defines for the query
# The stored sources a rule's ids may name, and what stored events carry for them: the source
# id (pixels, apps, event sets) or the id the engagement intake reports (forms, accounts).
STORED_KINDS: dict[SourceKind, tuple[tuple[StoredKind, ...], bool]] = {
    SourceKind.PIXEL: ((StoredKind.PIXEL,), False),
    SourceKind.APP: ((StoredKind.APP,), False),
    SourceKind.OFFLINE: ((StoredKind.OFFLINE, StoredKind.CRM), False),
    SourceKind.LEAD_FORM: ((StoredKind.LEAD_FORM,), True),
    SourceKind.ACCOUNT: ((StoredKind.ACCOUNT,), True),
}


class RuleAudiences:
    def __init__(
        self,
        *,
        db: Database,
        audiences: Audiences,
        sources: EventSources,
        run_query: Callable[[str], BitMap],
        clock: Callable[[], datetime],
        refresh_seconds: float = 60.0,
        watch: Callable[[int, LiveAudience], None] | None = None,
        unwatch: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.audiences = audiences
        self.sources = sources
        self.run_query = run_query
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.watch = watch
        self.unwatch = unwatch
        self._watched: dict[int, Plan] = {}  # live audiences and the plan they were given
        self._live_at: dict[int, float] = {}  # when each last published live members
        self._live_lock = threading.Lock()
        self._rounds = Periodic("rule-refresh", lambda: self.refresh_seconds, self.refresh_due)
        audiences.jobs.register(EVALUATE_RULE, self._evaluate_job, self._failed)

    # --- create ------------------------------------------------------------------------------

    def create(
        self, *, advertiser_id: int, name: str, body: Mapping[str, Any], extended: bool = False
    ) -> int:
        """Check the rule (sources must be the advertiser's), store it, queue its evaluation.
        ``extended``: the body is in Likewise's dialect (``/likewise/v1/audience/rule/create/``:
        AND between rules, thresholds); it is stored with the rule and read again with it."""
        rule = parse_rule_audience(
            body,
            resolve_source=self.resolver(advertiser_id),
            creators=lambda: self.account_codes(advertiser_id),
            extended=extended,
        )
        audience_type = str(body["audience_type"]).strip().upper()
        with self.db.session() as s:
            audience = self.audiences.new_audience(
                s,
                advertiser_id=advertiser_id,
                name=name,
                source=Source.RULE,
                status=Status.CALCULATING,
                retention_in_days=rule.retention_in_days,
            )
            s.add(
                AudienceRule(
                    audience_id=audience.id,
                    audience_type=audience_type,
                    rule_spec=dict(body["rule_spec"]),  # type: ignore[call-overload]
                    auto_refresh=rule.auto_refresh,
                    extended=extended,
                )
            )
            detail = f"{audience_type}, {'auto-refresh' if rule.auto_refresh else 'snapshot'}"
            if extended:
                detail += ", Likewise rule"
            self.audiences.history(s, audience.id, "CREATE", detail)
            audience_id = audience.id
        self.evaluate(audience_id)
        return audience_id

    def resolver(self, advertiser_id: int) -> Callable[[SourceKind, str], int | str | None]:
        """``event_source_ids`` → what stored events carry, for this advertiser's sources only
        (an unknown id and another advertiser's get the same answer: None)."""

        def resolve(kind: SourceKind, raw_id: str) -> int | str | None:
            if kind not in STORED_KINDS:
                # Ad groups and shops: only the advertiser's own ad and shop events are read,
                # so someone else's id matches nothing. Posts and LIVE videos: organic activity
                # counts only when the advertiser's business accounts created them (the plan's
                # Sources.creators). Either way the id need not be checked here.
                return raw_id
            kinds, by_code = STORED_KINDS[kind]
            rows, _ = self.sources.list(advertiser_ids=[advertiser_id], kinds=kinds, code=raw_id)
            if not rows and raw_id.isdigit():
                rows, _ = self.sources.list(
                    advertiser_ids=[advertiser_id], kinds=kinds, ids=[int(raw_id)]
                )
            if not rows:
                return None
            return rows[0].code if by_code else rows[0].id

        return resolve

    def account_codes(self, advertiser_id: int) -> list[str]:
        """The advertiser's business accounts, as organic events name their creator."""
        rows, _ = self.sources.list(advertiser_ids=[advertiser_id], kinds=(StoredKind.ACCOUNT,))
        return [row.code for row in rows if row.code]

    # --- evaluate ----------------------------------------------------------------------------

    def evaluate(self, audience_id: int) -> None:
        """Queue an evaluation of the audience now."""
        with self.db.session() as s:
            job = Job(
                audience_id=audience_id,
                kind=EVALUATE_RULE,
                payload={},
                status="QUEUED",
                created_at=self.clock(),
            )
            s.add(job)
            s.flush()
            job_id = job.id
        self.audiences.jobs.submit(job_id)

    def plan(self, audience: Audience, rule: AudienceRule) -> Plan:
        return parse_rule_spec(
            rule.audience_type,
            rule.rule_spec,
            resolve_source=self.resolver(audience.advertiser_id),
            creators=lambda: self.account_codes(audience.advertiser_id),
            extended=rule.extended,
        )

    def _evaluate_job(self, job: Job) -> None:
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            rule = s.get(AudienceRule, job.audience_id)
            if audience is None or audience.deleted or rule is None:
                return
            if not rule.auto_refresh and rule.evaluated_at is not None:
                return  # a snapshot keeps its first result
            try:
                plan = self.plan(audience, rule)
            except InvalidParameter as exc:  # e.g. a source deleted since: retrying won't help
                self._fail(s, audience, exc.message, exc.message)
                return
            advertiser_id = audience.advertiser_id
        now = self.clock()
        as_of = now.replace(tzinfo=UTC).timestamp()
        sql = plan_sql(plan, advertiser_id=advertiser_id, as_of=as_of, events=EVENTS_RELATION)
        members = self.run_query(sql)
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            rule = s.get(AudienceRule, job.audience_id)
            if audience is None or audience.deleted or rule is None:
                return
            live = audience.id in self._watched
            changed = members != self.audiences.members(audience.id, audience.version)
            if changed or audience.version == 0:
                self.audiences.new_version(s, audience, members, supersede_live=not live)
                self.audiences.history(
                    s, audience.id, "CALCULATED", f"version {audience.version}", msg=""
                )
            audience.status = Status.READY.value
            audience.error_msg = ""
            rule.evaluated_at = now
            auto_refresh = rule.auto_refresh
        with self._live_lock:
            # Live members published after this evaluation began are newer: they stay.
            if live and self._live_at.get(job.audience_id, -1.0) < as_of:
                self.audiences.publish_live(job.audience_id, members)
        if auto_refresh and not live:
            self._watch(job.audience_id, advertiser_id, plan)

    # --- live --------------------------------------------------------------------------------

    def _watch(self, audience_id: int, advertiser_id: int, plan: Plan) -> None:
        if self.watch is None:
            return
        with self._live_lock:
            self._watched[audience_id] = plan
        self.watch(audience_id, LiveAudience(plan, advertiser_id=advertiser_id))

    def _unwatch(self, audience_id: int) -> None:
        with self._live_lock:
            known = self._watched.pop(audience_id, None) is not None
            self._live_at.pop(audience_id, None)
        if known and self.unwatch is not None:
            self.unwatch(audience_id)

    def on_live(self, changes: Mapping[Hashable, BitMap]) -> None:
        """Live members that changed (from the event processing): readers see them at once."""
        now = time.time()
        with self._live_lock:
            for key, members in changes.items():
                if isinstance(key, int) and key in self._watched:
                    self._live_at[key] = now
                    self.audiences.publish_live(key, members)

    def _keep_live(self) -> None:
        """Store live members as a version when they changed (at most once a round), and
        follow changes of the rule's meaning: a source deleted (the audience fails), a business
        account added (the plan changes), the audience deleted."""
        for audience_id in list(self._watched):
            with self.db.session() as s:
                audience = s.get(Audience, audience_id)
                rule = s.get(AudienceRule, audience_id)
                if audience is None or audience.deleted or rule is None:
                    self._unwatch(audience_id)
                    continue
                try:
                    plan = self.plan(audience, rule)
                except InvalidParameter as exc:
                    self._unwatch(audience_id)
                    self._fail(s, audience, exc.message, exc.message)
                    continue
                members = self.audiences.live_members(audience_id)
                stored = self.audiences.members(audience_id, audience.version)
                if members is not None and members != stored:
                    self.audiences.new_version(s, audience, members, supersede_live=False)
                rule.evaluated_at = self.clock()
                advertiser_id = audience.advertiser_id
            if plan != self._watched.get(audience_id):
                self._watch(audience_id, advertiser_id, plan)

    def _failed(self, job: Job, error: str) -> None:
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            if audience is not None:
                message = "the rule could not be evaluated; it is tried again at the next refresh"
                self._fail(s, audience, message, error)

    def _fail(self, s: Session, audience: Audience, message: str, detail: str) -> None:
        audience.status = Status.FAILED.value
        audience.error_msg = message[:500]
        self.audiences.history(s, audience.id, "FAILED", detail[:500], msg=audience.error_msg)

    # --- refresh -----------------------------------------------------------------------------

    def start(self) -> None:
        """Make evaluated auto-refresh audiences live again, and start refreshing."""
        if self.watch is not None:
            with self.db.session() as s:
                rows = s.execute(
                    select(Audience, AudienceRule)
                    .join(AudienceRule, AudienceRule.audience_id == Audience.id)
                    .where(
                        Audience.deleted.is_(False),
                        AudienceRule.auto_refresh.is_(True),
                        AudienceRule.evaluated_at.is_not(None),
                        Audience.status == Status.READY.value,
                    )
                ).all()
                plans = []
                for audience, rule in rows:
                    try:
                        plan = self.plan(audience, rule)
                    except InvalidParameter:
                        continue  # the next refresh round marks it failed
                    plans.append((audience.id, audience.advertiser_id, plan))
            for audience_id, advertiser_id, plan in plans:
                self._watch(audience_id, advertiser_id, plan)
        self._rounds.start()

    def stop(self) -> None:
        self._rounds.stop()

    def refresh_due(self) -> int:
        """Queue evaluations of auto-refresh audiences last evaluated (or failed) more than
        ``refresh_seconds`` ago; returns how many."""
        self._keep_live()
        now = self.clock()
        cutoff = now - timedelta(seconds=self.refresh_seconds)
        with self.db.session() as s:
            # A refresh a minute per audience would grow the jobs table without end: finished
            # evaluations are kept an hour (for inspection), failures stay.
            s.execute(
                delete(Job).where(
                    Job.kind == EVALUATE_RULE,
                    Job.status == "DONE",
                    Job.finished_at < now - timedelta(hours=1),
                )
            )
            due = list(
                s.execute(
                    select(AudienceRule.audience_id)
                    .join(Audience, Audience.id == AudienceRule.audience_id)
                    .where(
                        Audience.deleted.is_(False),
                        # Never evaluated (or failed so far): every kind; else auto-refresh.
                        AudienceRule.evaluated_at.is_(None)
                        | (
                            AudienceRule.auto_refresh.is_(True)
                            & (AudienceRule.evaluated_at < cutoff)
                        ),
                    )
                ).scalars()
            )
            busy = set(
                s.execute(
                    select(Job.audience_id).where(
                        Job.kind == EVALUATE_RULE, Job.status.in_(("QUEUED", "RUNNING"))
                    )
                ).scalars()
            )
        queued = [a for a in due if a not in busy and a not in self._watched]
        for audience_id in queued:
            self.evaluate(audience_id)
        return len(queued)
