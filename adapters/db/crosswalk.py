"""The confidential crosswalk in PostgreSQL: resolve incoming PHI to persons, and administer them.

``CrosswalkService`` is the one API the pipeline and the gateway call. Every method that reads PHI or
writes takes an :class:`~tmi.crosswalk.model.Actor` and writes an ``audit_log`` row in the same
transaction (no audit, no effect). Matching decisions come from the pure :func:`tmi.crosswalk.decide`;
this module finds candidates, serializes concurrent resolves of one match key with a transaction-level
advisory lock, and persists. Nothing here logs PHI.

Typical use::

    service = CrosswalkService.connect(dsn)           # opens a small psycopg pool
    res = service.resolve(phi, source="intake:<key>")  # Resolution(person_id, pseudonym, alias, flags, …)
    service.record_instance(person_id=res.person_id, identity_id=res.identity_id, ...)
    provider = PgPseudonymProvider(service)           # tmi.ports.PseudonymProvider for the deid core
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from adapters.db.pipelining import one_transaction
from tmi.crosswalk.decide import Candidate, Decision, compare, decide
from tmi.crosswalk.model import (
    SYSTEM_ACTOR,
    Actor,
    AuditEntry,
    ChangeResult,
    Flag,
    FlagDetail,
    Identity,
    InstanceRecord,
    InvalidChangeError,
    Link,
    Note,
    NoteVersion,
    Person,
    PersonDetail,
    PersonSummary,
    RepublishItem,
    Resolution,
    StudySummary,
    UnknownRecordError,
)
from tmi.crosswalk.normalize import NormalizedName, NormalizedPHI, fold_text, normalize_phi, raw_fingerprint
from tmi.crosswalk.pseudonyms import alias_for, name_words, new_pseudonym
from tmi.crosswalk.rules import MatchRules, load_rules
from tmi.errors import PoisonInputError, RetryableError
from tmi.ports import PatientPHI, PseudonymAssignment
from tmi.settings import Settings, get_settings

__all__ = [
    "SYSTEM_ACTOR", "Actor", "AuditEntry", "ChangeResult", "CrosswalkService", "Flag", "FlagDetail",
    "Identity", "InstanceRecord", "Link", "Note", "NoteVersion", "PersonDetail", "PersonSummary",
    "PgPseudonymProvider", "RepublishItem", "Resolution",
]

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
INSTANCE_STATES = ("received", "processing", "published", "quarantined", "republish_pending", "failed",
                   "withdrawn")
CORRECTABLE = {"patient_id": "patient_id", "issuer": "issuer", "institution": "institution",
               "calling_aet": "calling_aet", "name": "patient_name", "patient_name": "patient_name",
               "birth_date": "birth_date", "sex": "sex", "other_ids": "other_ids"}

_IDENTITY_COLUMNS = sql.SQL(
    "s.id, s.kind, s.corrects_id, s.patient_id, s.issuer, s.institution, s.calling_aet, s.patient_name, "
    "s.birth_date, s.sex, s.other_ids, s.source, s.created_at, s.created_by, s.reason, "
    "l.person_id::text AS person_id, l.method AS link_method, l.confidence::float8 AS link_confidence, "
    "l.rule AS link_rule, "
    "(SELECT max(c.id) FROM scan_identity c WHERE c.corrects_id = s.id) AS superseded_by"
)
_FLAG_COLUMNS = (
    "id, kind, status, identity_id, person_id::text AS person_id, other_person_id::text AS other_person_id, "
    "other_identity_id, evidence, created_at, resolution, resolved_by, resolved_at"
)
_INSTANCE_SELECT = (
    "SELECT i.id, st.original_study_uid, st.anon_study_uid, se.original_series_uid, se.anon_series_uid, "
    "i.original_sop_uid, i.anon_sop_uid, i.person_id::text AS person_id, i.identity_id, st.accession, "
    "st.study_date, i.intake_key, i.research_key, i.state, i.state_detail "
    "FROM instance i JOIN series se ON se.id = i.series_id JOIN study st ON st.id = se.study_id "
)


# Step 1 of resolve(): one statement (one snapshot) finds an identical earlier arrival (its person and open
# flags, audited in the same statement: 'hit' and 'audit'), the sizes of the two groups the advisory
# locks protect and whether an identical arrival exists ('snap'), and every candidate ('cand'); the
# first eight columns (hit, then snap) repeat on every row. Arms: 'k' same match key (all of
# its identities), 'n' other keys with the same normalized name, 'b' other keys with the same birth date
# (fuzzy flags; rule 4 on the fields present when a name is missing). A NULL parameter empties its arm.
# For an arrival without a birth date a second statement in the same round trip, _SIMILAR_NAMES_SQL,
# adds 'f': other keys with a similar name (then no exact field may lead to a known patient whose name
# was mistyped).
# Each arm is skipped at once (a one-time filter) when the identical arrival exists, the common case.
# Other-key identities of the other sex are left out: no rule or flag can come of them (rule 4 needs
# no differing field, fuzzy evidence needs the sexes not to differ).
# Candidates carry person ids only: the pseudonym/alias of a linked person is read by the write itself.
_CANDIDATE_ARM = """
  (SELECT '{arm}' AS arm, s.id, l.person_id::text, s.clinic_key, s.patient_id_norm, s.name_alpha,
          s.name_ideo, s.name_phon, s.birth_date_norm, s.sex_norm
     FROM scan_identity s JOIN identity_link l ON l.identity_id = s.id AND l.valid_to IS NULL
    WHERE {where}
      AND NOT EXISTS (SELECT 1 FROM scan_identity c WHERE c.corrects_id = s.id)
      AND NOT EXISTS (SELECT 1 FROM scan_identity f WHERE f.fingerprint = %(fp)s AND f.kind = 'arrived')
    {limit})"""
_OTHER_KEY_NOT_OTHER_SEX = (
    "(s.clinic_key IS DISTINCT FROM %(ck)s OR s.patient_id_norm IS DISTINCT FROM %(pk)s)"
    " AND (s.sex_norm IS NULL OR %(sex)s::text IS NULL OR s.sex_norm = %(sex)s)"
)
_CANDIDATES_TEMPLATE = """
WITH hit AS (
  SELECT s.id, p.id AS pid, p.pseudonym, p.alias,
         ARRAY(SELECT DISTINCT f.kind FROM review_flag f
                WHERE f.identity_id = s.id AND f.status = 'open' ORDER BY f.kind) AS flags
    FROM scan_identity s JOIN identity_link l ON l.identity_id = s.id AND l.valid_to IS NULL
    JOIN person p ON p.id = l.person_id
   WHERE s.fingerprint = %(fp)s AND s.kind = 'arrived'),
audit AS (
  INSERT INTO audit_log (actor, role, action, target_type, target_id, request_id, detail)
  SELECT %(actor)s, %(role)s, 'crosswalk.resolve', 'person', hit.pid::text, %(req)s,
         jsonb_build_object('identity_id', hit.id, 'rule', 'exact_arrival', 'source', %(source)s::text)
    FROM hit),
snap AS (
  SELECT EXISTS (SELECT 1 FROM scan_identity WHERE fingerprint = %(fp)s AND kind = 'arrived') AS fp_seen,
         (SELECT count(*) FROM scan_identity WHERE clinic_key = %(ck)s AND patient_id_norm = %(pk)s) AS key_n,
         (SELECT count(*) FROM scan_identity
           WHERE name_key = %(nk)s AND birth_date_norm IS NOT DISTINCT FROM %(bd)s) AS nb_n),
cand AS ({arms})
SELECT hit.id, hit.pid::text, hit.pseudonym, hit.alias, hit.flags, snap.fp_seen, snap.key_n, snap.nb_n, cand.*
  FROM snap LEFT JOIN hit ON true LEFT JOIN cand ON true
"""
_CANDIDATE_ARMS = " UNION ALL".join((
    _CANDIDATE_ARM.format(arm="k", where="s.clinic_key = %(ck)s AND s.patient_id_norm = %(pk)s", limit=""),
    _CANDIDATE_ARM.format(arm="n", where="s.name_key = %(nk)s AND " + _OTHER_KEY_NOT_OTHER_SEX,
                          limit="LIMIT %(lim)s"),
    _CANDIDATE_ARM.format(arm="b", where="s.birth_date_norm = %(bd)s AND " + _OTHER_KEY_NOT_OTHER_SEX,
                          limit="LIMIT %(lim_birth)s"),
))
_CANDIDATES_SQL = _CANDIDATES_TEMPLATE.format(arms=_CANDIDATE_ARMS)
# The 'f' arm (pg_trgm, migration 0003): `%%` is the trigram similarity operator, index-backed at the
# session's pg_trgm.similarity_threshold (connect() sets it from the rules); the explicit similarity()
# test keeps the rules' threshold whatever the session says. Most similar first. Skipped at once when the
# match key already has identities: other-key evidence only matters for a new person, and a new person
# under a known key is an ID collision, flagged anyway. A statement of its own: inside _CANDIDATES_SQL it
# made PostgreSQL plan that statement afresh at every call (no generic plan), ~2 ms more per resolve.
_SIMILAR_NAME_WHERE = (
    "s.name_key %% %(nk)s AND s.name_key <> %(nk)s AND similarity(s.name_key, %(nk)s) >= %(trgm)s"
    " AND NOT EXISTS (SELECT 1 FROM scan_identity kk WHERE kk.clinic_key = %(ck)s"
    " AND kk.patient_id_norm = %(pk)s) AND "
)
_SIMILAR_NAMES_SQL = _CANDIDATE_ARM.format(arm="f", where=_SIMILAR_NAME_WHERE + _OTHER_KEY_NOT_OTHER_SEX,
                                           limit="ORDER BY similarity(s.name_key, %(nk)s) DESC LIMIT %(lim)s")
_RESOLVE_ATTEMPTS = 8


_CANDIDATE_AT = 8  # a _CANDIDATES_SQL row: hit (5 columns), snap (3), then the candidate from its arm


def _candidate_from_tuple(row: Sequence[Any], at: int = _CANDIDATE_AT) -> Candidate:
    """A candidate from a candidate-arm row starting at ``at`` (``arm, id, person_id, …``): 8 in a
    :data:`_CANDIDATES_SQL` row (after the five ``hit`` and the three ``snap`` columns), 0 in a
    :data:`_SIMILAR_NAMES_SQL` row."""
    return Candidate(
        identity_id=int(row[at + 1]),
        person_id=str(row[at + 2]),
        phi=NormalizedPHI(
            clinic=row[at + 3], patient_id=row[at + 4],
            name=NormalizedName(row[at + 5] or "", row[at + 6] or "", row[at + 7] or ""),
            birth_date=row[at + 8], sex=row[at + 9],
        ),
    )


def _lock_id(text: str) -> int:
    """A signed 64-bit advisory-lock id for ``text`` (stable across processes)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big", signed=True)


def _none_if_empty(value: str) -> str | None:
    return value or None


def candidate_params(norm: NormalizedPHI, fingerprint: str, rules: MatchRules, *,
                     actor: Actor = SYSTEM_ACTOR, source: str | None = None) -> dict[str, Any]:
    """The parameters of :data:`_CANDIDATES_SQL` (and, with ``trgm`` added, :data:`_SIMILAR_NAMES_SQL`)
    for an arrival; ``actor`` and ``source`` go into the audit row of an identical arrival."""
    key = norm.match_key or (None, None)
    return {"fp": fingerprint, "ck": key[0], "pk": key[1], "nk": _none_if_empty(norm.name.key),
            "bd": norm.birth_date, "sex": norm.sex, "lim": rules.max_candidates,
            "lim_birth": rules.max_candidates * 4, "actor": actor.name, "role": actor.role,
            "req": actor.request_id, "source": source}


def configure_session(conn: Conn, rules: MatchRules) -> None:
    """Session settings resolve() relies on: the trigram operator of :data:`_SIMILAR_NAMES_SQL` matches at
    ``pg_trgm.similarity_threshold`` (a placeholder until pg_trgm's library is loaded, which then adopts
    it). :meth:`CrosswalkService.connect` applies it to every pooled connection."""
    conn.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, false)",
                 (str(rules.name_search_threshold),))


class CrosswalkService:
    """The crosswalk API over a psycopg 3 connection pool (see the module docstring)."""

    def __init__(self, pool: ConnectionPool[Any], rules: MatchRules | None = None) -> None:
        self._pool = pool
        self.rules = rules or load_rules()

    @classmethod
    def connect(cls, dsn: str, *, rules: MatchRules | None = None, min_size: int = 1, max_size: int = 4,
                ) -> CrosswalkService:
        """Open a pool on ``dsn`` (nothing connects before this call) and return the service."""
        rules = rules or load_rules()
        pool: ConnectionPool[Any] = ConnectionPool(dsn, min_size=min_size, max_size=max_size, open=False,
                                                   name="tmi-crosswalk", kwargs={"autocommit": True},
                                                   configure=lambda conn: configure_session(conn, rules))
        pool.open(wait=True, timeout=30)
        return cls(pool, rules)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, rules_path: str | None = None,
                      max_size: int = 4) -> CrosswalkService:
        """Connect to ``settings.effective_database_url`` (default: ``get_settings()``), with the rules
        file at ``rules_path`` (default: the packaged defaults)."""
        settings = settings or get_settings()
        return cls.connect(settings.effective_database_url, rules=load_rules(rules_path), max_size=max_size)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> CrosswalkService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        """A pooled connection in autocommit mode (single statements commit by themselves);
        connection-level failures become :class:`RetryableError`."""
        try:
            with self._pool.connection() as conn:
                if not conn.autocommit:  # a pool handed in by the caller
                    conn.autocommit = True
                yield conn
        except psycopg.OperationalError as exc:
            raise RetryableError(f"crosswalk database unavailable: {type(exc).__name__}") from exc

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        """One transaction on a pooled connection."""
        try:
            with self._conn() as conn, conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise RetryableError(f"crosswalk database unavailable: {type(exc).__name__}") from exc

    # ------------------------------------------------------------------ audit
    @staticmethod
    def _audit(conn: Conn, actor: Actor, action: str, target_type: str | None, target_id: object | None,
               detail: Mapping[str, Any] | None = None) -> None:
        conn.execute(
            "INSERT INTO audit_log (actor, role, action, target_type, target_id, request_id, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (actor.name, actor.role, action, target_type, None if target_id is None else str(target_id),
             actor.request_id, Jsonb(dict(detail or {}))),
        )

    # ------------------------------------------------------------------ resolve
    def resolve(self, phi: PatientPHI, *, source: str | None = None, actor: Actor = SYSTEM_ACTOR,
                ) -> Resolution:
        """Find or create the person for ``phi`` by the matching rules; raise flags; audit.

        Identical arrivals (same raw PHI) share one scan identity and return at once. Otherwise the
        match key (clinic, patient ID) — and the normalized name + birth date, for rule 4 — are locked
        for the writing transaction, so two workers resolving one brand-new patient create exactly one
        person. ``source`` is a PHI-free provenance string (e.g. the intake object key).

        Two statements at most, one round trip each (optimistic concurrency under the advisory locks):

        1. read: the identical-arrival lookup (with its audit row), every candidate (same key; other
           keys by name or birth date) and the sizes of the two locked groups (rows under the key, rows
           with this name + birth date), in one statement (:data:`_CANDIDATES_SQL`; an arrival without
           a birth date adds the trigram name search in the same round trip);
        2. write: one statement that takes the locks and writes person, identity, link, flags and
           audit row **only if** the locked groups still have the sizes read in step 1 (scan identities
           are never deleted, so any concurrent arrival grows them) and a linked person is still active
           and still linked. The check runs in ``crosswalk_resolve_guard()`` (migration 0004), after
           the locks are granted, on a snapshot of its own.

        When the check fails (a concurrent worker stored a relevant identity in between) nothing is
        written and the resolve starts over with fresh candidates.
        """
        fingerprint = raw_fingerprint(phi)
        norm = normalize_phi(phi, self.rules.clinic_key_fields)
        if not (norm.patient_id or norm.name.present or norm.birth_date):
            # Nothing identifies the patient: linking would lump every such instance into one person.
            raise PoisonInputError("crosswalk.no_patient_identity",
                                   "no patient ID, name or birth date to resolve a person from")
        clashes = 0
        for _ in range(_RESOLVE_ATTEMPTS):
            try:
                result = self._resolve_once(phi, norm, fingerprint, source, actor)
            except psycopg.errors.UniqueViolation as exc:
                # A random pseudonym or person UUID clash (astronomically rare): draw again.
                clashes += 1
                if clashes == 3 or exc.diag.constraint_name not in ("person_pseudonym_key", "person_pkey"):
                    raise
                continue
            if result is not None:
                return result
        raise RetryableError("crosswalk: concurrent arrivals kept changing this patient's candidates")

    def _resolve_once(self, phi: PatientPHI, norm: NormalizedPHI, fingerprint: str, source: str | None,
                      actor: Actor) -> Resolution | None:
        """One optimistic attempt (see :meth:`resolve`); ``None`` when it must be repeated."""
        with self._conn() as conn:
            params = candidate_params(norm, fingerprint, self.rules, actor=actor, source=source)
            similar = None
            if params["bd"] is None and params["nk"] is not None:
                # Both statements in one round trip: the pipeline syncs once, on exit (fetching inside
                # the block would sync twice).
                with conn.pipeline():
                    cands = conn.execute(_CANDIDATES_SQL, params)
                    similar = conn.execute(_SIMILAR_NAMES_SQL, {
                        **params, "trgm": self.rules.name_search_threshold})
            else:
                cands = conn.execute(_CANDIDATES_SQL, params)
            rows = cands.fetchall()
            first = rows[0]
            if first[0] is not None:  # an identical earlier arrival (audited by the statement)
                return Resolution(person_id=first[1], pseudonym=first[2], alias=first[3],
                                  flags=tuple(first[4]), identity_id=int(first[0]), created_person=False,
                                  rule="exact_arrival")
            fp_seen, key_n, name_birth_n = first[5], first[6], first[7]
            if fp_seen:
                return None  # an identical arrival, not linked in this snapshot: the next attempt finds it
            same_key: list[Candidate] = []
            others: dict[int, Candidate] = {}
            for row in rows:
                if row[_CANDIDATE_AT] is None:
                    continue
                cand = _candidate_from_tuple(row)
                if row[_CANDIDATE_AT] == "k":
                    same_key.append(cand)
                else:
                    others.setdefault(cand.identity_id, cand)
            for row in similar.fetchall() if similar is not None else ():
                cand = _candidate_from_tuple(row, at=0)
                others.setdefault(cand.identity_id, cand)
            decision = decide(norm, same_key, list(others.values()), self.rules)
            via = [c.identity_id for c in (*same_key, *others.values()) if c.person_id == decision.person_id]
            # The lock(s) and the guarded write: one statement, its own transaction (autocommit).
            cursor, resolution = self._write_resolution(
                conn, phi, norm, fingerprint, decision, source, actor,
                guard={"key_n": key_n, "nb_n": name_birth_n, "via": via})
            row = cursor.fetchone()
            if row is None:
                return None  # the guard failed: nothing was written
            identity_id, pseudonym, alias = row
            if resolution.created_person:
                return dataclasses.replace(resolution, identity_id=int(identity_id))
            return dataclasses.replace(resolution, identity_id=int(identity_id), pseudonym=pseudonym,
                                       alias=alias)

    @staticmethod
    def _lock_ids(norm: NormalizedPHI, fingerprint: str) -> list[int]:
        """The advisory locks of a resolve's write, sorted (one global order: no deadlocks): the match
        key (or, without one, the raw fingerprint) and the normalized name + birth date."""
        keys = set()
        key = norm.match_key
        keys.add(_lock_id("key\x1f" + "\x1f".join(key)) if key else _lock_id("fp\x1f" + fingerprint))
        if norm.name.key:
            keys.add(_lock_id("phi\x1f" + norm.name.key + "\x1f" + (norm.birth_date or "")))
        return sorted(keys)

    def _insert_identity(self, conn: Conn, phi: PatientPHI, norm: NormalizedPHI, *, kind: str,
                         fingerprint: str | None, source: str | None, actor: Actor,
                         corrects_id: int | None = None, reason: str | None = None) -> int:
        row = conn.execute(
            "INSERT INTO scan_identity (kind, corrects_id, patient_id, issuer, institution, calling_aet, "
            " patient_name, birth_date, sex, other_ids, clinic_key, patient_id_norm, name_key, name_alpha, "
            " name_ideo, name_phon, birth_date_norm, sex_norm, fingerprint, source, created_by, "
            "created_role, "
            " request_id, reason) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (kind, corrects_id, phi.patient_id, phi.issuer, phi.institution, phi.calling_aet, phi.name,
             phi.birth_date, phi.sex, list(phi.other_ids), norm.clinic, norm.patient_id,
             _none_if_empty(norm.name.key), _none_if_empty(norm.name.alphabetic),
             _none_if_empty(norm.name.ideographic), _none_if_empty(norm.name.phonetic), norm.birth_date,
             norm.sex, fingerprint, source, actor.name, actor.role, actor.request_id, reason),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _new_person(self, conn: Conn, sex: str | None, actor: Actor) -> tuple[str, str, str]:
        while True:  # 50 random bits: a clash is astronomically rare, but the constraint decides
            pseudonym = new_pseudonym()
            row = conn.execute(
                "INSERT INTO person (pseudonym, alias, sex, created_by) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (pseudonym) DO NOTHING RETURNING id::text",
                (pseudonym, alias_for(pseudonym, sex), sex, actor.name),
            ).fetchone()
            if row is not None:
                return str(row[0]), pseudonym, alias_for(pseudonym, sex)

    @staticmethod
    def _link(conn: Conn, identity_id: int, person_id: str, *, method: str, confidence: float, rule: str,
              actor: Actor, provenance: Mapping[str, Any], change_id: int | None = None) -> None:
        conn.execute(
            "INSERT INTO identity_link (identity_id, person_id, method, confidence, rule, provenance, "
            "change_id, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (identity_id, person_id, method, confidence, rule, Jsonb(dict(provenance)), change_id,
             actor.name),
        )

    @staticmethod
    def _close_links(conn: Conn, identity_ids: Sequence[int], actor: Actor) -> None:
        conn.execute(
            "UPDATE identity_link SET valid_to = now(), closed_by = %s "
            "WHERE identity_id = ANY(%s) AND valid_to IS NULL",
            (actor.name, list(identity_ids)),
        )

    def _write_resolution(self, conn: Conn, phi: PatientPHI, norm: NormalizedPHI, fingerprint: str,
                          decision: Decision, source: str | None, actor: Actor,
                          guard: Mapping[str, Any]) -> tuple[psycopg.Cursor[Any], Resolution]:
        """Run ONE statement that takes the advisory locks (:meth:`_lock_ids`), checks ``guard`` (the locked
        groups' sizes read with the candidates, the linked person still active and linked) and, when it
        holds, writes the (new) person, the identity, its link, its flags and the audit row. Its cursor
        has the identity id and the linked person's pseudonym and alias — or no row, when the guard
        failed and nothing was written."""
        created = decision.action == "new_person"
        if created:
            person_id = str(uuid.uuid4())
            pseudonym = new_pseudonym()
            alias = alias_for(pseudonym, norm.sex, avoid=name_words(phi.name))
            method, confidence = "exact", 1.0
        else:
            assert decision.person_id is not None
            person_id = decision.person_id
            pseudonym, alias = "", ""  # read from the person row by the statement
            method, confidence = decision.method, decision.confidence
        key = norm.match_key or (None, None)
        flags = list(decision.flag_kinds)
        flag_rows = [{"kind": f.kind, "other_person": f.person_id, "other_identity": f.identity_id,
                      "evidence": f.evidence} for f in decision.flags]
        cursor = conn.execute(
            # The guard function locks, then checks on a fresh snapshot (migration 0004); the g CTE
            # calls it once (a volatile function is never inlined) before anything is written.
            "WITH g AS (SELECT crosswalk_resolve_guard(%(locks)s, %(ck)s, %(pk)s, %(key_n)s, %(name_key)s, "
            "  %(birth_norm)s, %(nb_n)s, %(fp)s, %(create)s, %(person)s::uuid, %(via)s) AS ok), "
            "p AS (INSERT INTO person (id, pseudonym, alias, sex, created_by) "
            "  SELECT %(person)s, %(pseudonym)s, %(alias)s, %(sex_norm)s, %(actor)s FROM g "
            "  WHERE %(create)s AND g.ok), "
            "i AS (INSERT INTO scan_identity (kind, patient_id, issuer, institution, calling_aet, "
            "  patient_name, birth_date, sex, other_ids, clinic_key, patient_id_norm, name_key, name_alpha, "
            "  name_ideo, name_phon, birth_date_norm, sex_norm, fingerprint, source, created_by, "
            "  created_role, request_id) "
            "  SELECT 'arrived', %(patient_id)s, %(issuer)s, %(institution)s, %(calling_aet)s, "
            "  %(name)s, %(birth_date)s, %(sex)s, %(other_ids)s, %(clinic)s, %(pid_norm)s, %(name_key)s, "
            "  %(alpha)s, %(ideo)s, %(phon)s, %(birth_norm)s, %(sex_norm)s, %(fp)s, %(source)s, %(actor)s, "
            "  %(role)s, %(req)s FROM g WHERE g.ok RETURNING id), "
            "l AS (INSERT INTO identity_link (identity_id, person_id, method, confidence, rule, provenance, "
            "  created_by) SELECT i.id, %(person)s, %(method)s, %(confidence)s, %(rule)s, %(provenance)s, "
            "  %(actor)s FROM i), "
            "f AS (INSERT INTO review_flag (kind, identity_id, person_id, other_person_id, "
            "  other_identity_id, "
            "  evidence, created_by) SELECT x.kind, i.id, %(person)s, x.other_person, x.other_identity, "
            "  x.evidence, %(actor)s FROM i, "
            "  jsonb_to_recordset(%(flags)s) AS x(kind text, other_person uuid, "
            "  other_identity bigint, evidence jsonb)), "
            "a AS (INSERT INTO audit_log (actor, role, action, target_type, target_id, request_id, detail) "
            "  SELECT %(actor)s, %(role)s, 'crosswalk.resolve', 'person', %(person)s, %(req)s, "
            "  jsonb_build_object('identity_id', i.id) || %(detail)s FROM i) "
            "SELECT i.id, pp.pseudonym, pp.alias FROM i LEFT JOIN person pp ON pp.id = %(person)s::uuid",
            {"patient_id": phi.patient_id, "issuer": phi.issuer, "institution": phi.institution,
             "calling_aet": phi.calling_aet, "name": phi.name, "birth_date": phi.birth_date, "sex": phi.sex,
             "other_ids": list(phi.other_ids), "clinic": norm.clinic, "pid_norm": norm.patient_id,
             "name_key": _none_if_empty(norm.name.key), "alpha": _none_if_empty(norm.name.alphabetic),
             "ideo": _none_if_empty(norm.name.ideographic), "phon": _none_if_empty(norm.name.phonetic),
             "birth_norm": norm.birth_date, "sex_norm": norm.sex, "fp": fingerprint, "source": source,
             "actor": actor.name, "role": actor.role, "req": actor.request_id, "person": person_id,
             "pseudonym": pseudonym, "alias": alias, "create": created,
             "method": method, "confidence": confidence, "rule": decision.rule, "flags": Jsonb(flag_rows),
             "provenance": Jsonb({"source": source, "rules_version": self.rules.version, "flags": flags}),
             "detail": Jsonb({"rule": decision.rule, "created_person": created, "flags": flags,
                              "source": source}),
             "ck": key[0], "pk": key[1], "key_n": guard["key_n"], "nb_n": guard["nb_n"],
             "via": list(guard["via"]), "locks": self._lock_ids(norm, fingerprint)},
        )
        return cursor, Resolution(person_id=person_id, pseudonym=pseudonym, alias=alias,
                                  flags=decision.flag_kinds, identity_id=0, created_person=created,
                                  rule=decision.rule)

    # ------------------------------------------------------------------ instances
    def record_instance(self, *, person_id: str, identity_id: int, original_study_uid: str,
                        anon_study_uid: str, original_series_uid: str, anon_series_uid: str,
                        original_sop_uid: str, anon_sop_uid: str, accession: str | None = None,
                        study_date: str | None = None, modality: str | None = None,
                        sop_class_uid: str | None = None, intake_key: str | None = None,
                        research_key: str | None = None, state: str = "received",
                        state_detail: str | None = None, actor: Actor = SYSTEM_ACTOR) -> InstanceRecord:
        """Record (or update, by original SOP instance UID) one instance with its study and series.

        A study or series already known keeps the anonymized UID it was first given, so images of one
        study arriving weeks apart share one anonymized study UID (rule 6); the returned record carries
        the stored UIDs, which callers must use.
        """
        if state not in INSTANCE_STATES:
            raise InvalidChangeError(f"unknown instance state {state!r}")
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("INSERT INTO study (original_study_uid, anon_study_uid, person_id, accession, study_date) "
             "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (original_study_uid) DO UPDATE SET "
             " accession = COALESCE(study.accession, EXCLUDED.accession), "
             " study_date = COALESCE(study.study_date, EXCLUDED.study_date), updated_at = now()",
             (original_study_uid, anon_study_uid, person_id, accession, study_date)),
            ("INSERT INTO series (study_id, original_series_uid, anon_series_uid, modality) "
             "VALUES ((SELECT id FROM study WHERE original_study_uid = %s), %s, %s, %s) "
             "ON CONFLICT (original_series_uid) DO UPDATE SET "
             " modality = COALESCE(series.modality, EXCLUDED.modality)",
             (original_study_uid, original_series_uid, anon_series_uid, modality)),
            ("INSERT INTO instance (series_id, original_sop_uid, anon_sop_uid, sop_class_uid, person_id, "
             " identity_id, intake_key, research_key, state, state_detail) "
             "VALUES ((SELECT id FROM series WHERE original_series_uid = %s), "
             " %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (original_sop_uid) DO UPDATE SET "
             " intake_key = COALESCE(EXCLUDED.intake_key, instance.intake_key), "
             " research_key = COALESCE(EXCLUDED.research_key, instance.research_key), "
             " state = EXCLUDED.state, state_detail = EXCLUDED.state_detail, updated_at = now()",
             (original_series_uid, original_sop_uid, anon_sop_uid, sop_class_uid, person_id, identity_id,
              intake_key, research_key, state, state_detail)),
            ("INSERT INTO audit_log (actor, role, action, target_type, target_id, request_id, detail) "
             "SELECT %s, %s, 'crosswalk.instance.record', 'instance', id::text, %s, %s "
             "FROM instance WHERE original_sop_uid = %s",
             (actor.name, actor.role, actor.request_id, Jsonb({"person_id": person_id, "state": state}),
              original_sop_uid)),
        ]
        race_keys = ("study_anon_study_uid_key", "series_anon_series_uid_key", "instance_anon_sop_uid_key")
        for attempt in range(3):
            try:
                return self._record_instance_once(statements, original_sop_uid)
            except psycopg.errors.UniqueViolation as exc:
                # Two workers recording the first instances of one study (or series) at once: ON CONFLICT
                # arbitrates on the original UID only, so the later insert trips over the anonymized UID's
                # unique index once the earlier one commits (it used to fail the instance, which came back
                # only after the queue's visibility timeout). The retry finds the committed row: the
                # anonymized UID is a keyed hash of the original, so it is the same one.
                if attempt == 2 or exc.diag.constraint_name not in race_keys:
                    raise
        raise AssertionError("unreachable")

    def _record_instance_once(self, statements: Sequence[tuple[str, tuple[Any, ...]]],
                              original_sop_uid: str) -> InstanceRecord:
        """``record_instance``'s statements as one transaction in one round trip: each row finds its
        parent by the original UID the statement before upserted."""
        with self._conn() as conn:
            with one_transaction(conn):
                for query, params in statements:
                    conn.execute(query, params)
                cur = conn.cursor(row_factory=class_row(InstanceRecord))
                cur.execute(_INSTANCE_SELECT + "WHERE i.original_sop_uid = %s", (original_sop_uid,))
            record = cur.fetchone()
        if record is None:  # pragma: no cover - the upsert above guarantees the row
            raise UnknownRecordError(f"instance {original_sop_uid!r} not recorded")
        return record

    def set_instance_state(self, instance_id: int, state: str, *, research_key: str | None = None,
                           detail: str | None = None, actor: Actor = SYSTEM_ACTOR) -> InstanceRecord:
        """Move an instance to ``state`` (e.g. ``published`` after a (re)publish), optionally its key."""
        if state not in INSTANCE_STATES:
            raise InvalidChangeError(f"unknown instance state {state!r}")
        with self._tx() as conn:
            updated = conn.execute(
                "UPDATE instance SET state = %s, state_detail = %s, "
                "research_key = COALESCE(%s, research_key), updated_at = now() WHERE id = %s",
                (state, detail, research_key, instance_id),
            ).rowcount
            if not updated:
                raise UnknownRecordError(f"instance {instance_id} not found")
            self._audit(conn, actor, "crosswalk.instance.state", "instance", instance_id, {"state": state})
            return self._instance(conn, instance_id)

    @staticmethod
    def _instance(conn: Conn, instance_id: int) -> InstanceRecord:
        with conn.cursor(row_factory=class_row(InstanceRecord)) as cur:
            cur.execute(_INSTANCE_SELECT + "WHERE i.id = %s", (instance_id,))
            record = cur.fetchone()
        if record is None:
            raise UnknownRecordError(f"instance {instance_id} not found")
        return record

    def instance_by_original_uid(self, original_sop_uid: str, *, actor: Actor) -> InstanceRecord | None:
        """The instance recorded for an original SOP instance UID (confidential read; audited)."""
        with self._tx() as conn:
            with conn.cursor(row_factory=class_row(InstanceRecord)) as cur:
                cur.execute(_INSTANCE_SELECT + "WHERE i.original_sop_uid = %s", (original_sop_uid,))
                record = cur.fetchone()
            self._audit(conn, actor, "crosswalk.instance.read", "instance",
                        record.id if record else None, {"found": record is not None})
            return record

    # ------------------------------------------------------------------ notes
    def add_dicom_notes(self, person_id: str, notes: Iterable[tuple[str, str] | str], *,
                        actor: Actor = SYSTEM_ACTOR) -> int:
        """Attach free text taken out of an instance (``(keyword, text)`` pairs or plain text) to a person.

        Identical text for one person is stored once (every instance of a study usually repeats it).
        Returns how many new notes were added.
        """
        added = 0
        with self._tx() as conn:
            self._require_person(conn, person_id)
            for item in notes:
                keyword, text = (None, item) if isinstance(item, str) else item
                text = text.strip()
                if not text:
                    continue
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                row = conn.execute(
                    "INSERT INTO note (person_id, source, keyword, origin_sha256, created_by) "
                    "VALUES (%s, 'dicom', %s, %s, %s) ON CONFLICT (person_id, origin_sha256) "
                    "WHERE source = 'dicom' DO NOTHING RETURNING id",
                    (person_id, keyword, digest, actor.name),
                ).fetchone()
                if row is None:
                    continue
                conn.execute(
                    "INSERT INTO note_version (note_id, version, body, edited_by, edited_role, request_id) "
                    "VALUES (%s, 1, %s, %s, %s, %s)",
                    (row[0], text, actor.name, actor.role, actor.request_id))
                added += 1
            self._audit(conn, actor, "crosswalk.notes.add_dicom", "person", person_id, {"added": added})
        return added

    def add_note(self, person_id: str, body: str, *, actor: Actor) -> Note:
        """Add an admin note (version 1) to a person."""
        if not body.strip():
            raise InvalidChangeError("a note needs text")
        with self._tx() as conn:
            self._require_person(conn, person_id)
            row = conn.execute(
                "INSERT INTO note (person_id, source, created_by) VALUES (%s, 'admin', %s) RETURNING id",
                (person_id, actor.name)).fetchone()
            assert row is not None
            conn.execute(
                "INSERT INTO note_version (note_id, version, body, edited_by, edited_role, request_id) "
                "VALUES (%s, 1, %s, %s, %s, %s)", (row[0], body, actor.name, actor.role, actor.request_id))
            self._audit(conn, actor, "crosswalk.note.add", "note", row[0], {"person_id": person_id})
            return self._note(conn, int(row[0]))

    def edit_note(self, note_id: int, body: str, *, actor: Actor, reason: str | None = None) -> Note:
        """Record a new version of a note; earlier versions stay (``Note.history``)."""
        if not body.strip():
            raise InvalidChangeError("a note needs text")
        with self._tx() as conn:
            row = conn.execute("SELECT id FROM note WHERE id = %s FOR UPDATE", (note_id,)).fetchone()
            if row is None:
                raise UnknownRecordError(f"note {note_id} not found")
            conn.execute(
                "INSERT INTO note_version (note_id, version, body, edited_by, edited_role, "
                "request_id, reason) "
                "SELECT %s, max(version) + 1, %s, %s, %s, %s, %s FROM note_version WHERE note_id = %s",
                (note_id, body, actor.name, actor.role, actor.request_id, reason, note_id))
            self._audit(conn, actor, "crosswalk.note.edit", "note", note_id, {"reason_given": bool(reason)})
            return self._note(conn, note_id)

    def note(self, note_id: int, *, actor: Actor) -> Note:
        """A note with its full history (PHI read; audited)."""
        with self._tx() as conn:
            note = self._note(conn, note_id)
            self._audit(conn, actor, "crosswalk.note.read", "note", note_id)
            return note

    @staticmethod
    def _notes_where(conn: Conn, where: sql.Composable, params: Sequence[Any]) -> list[Note]:
        with conn.cursor(row_factory=class_row(NoteVersion)) as cur:
            cur.execute(sql.SQL(
                "SELECT v.note_id, v.version, v.body, v.edited_at, v.edited_by, v.reason "
                "FROM note_version v JOIN note n ON n.id = v.note_id WHERE {} ORDER BY v.note_id, v.version"
            ).format(where), params)
            versions = cur.fetchall()
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql.SQL(
                "SELECT n.id, n.person_id::text AS person_id, n.source, n.keyword, n.created_at, "
                "n.created_by "
                "FROM note n WHERE {} ORDER BY n.id").format(where), params)
            heads = cur.fetchall()
        by_note: dict[int, list[NoteVersion]] = {}
        for v in versions:
            by_note.setdefault(v.note_id, []).append(v)
        notes = []
        for head in heads:
            history = tuple(by_note.get(head["id"], ()))
            latest = history[-1]
            notes.append(Note(id=head["id"], person_id=head["person_id"], source=head["source"],
                              keyword=head["keyword"], created_at=head["created_at"],
                              created_by=head["created_by"], version=latest.version, body=latest.body,
                              history=history))
        return notes

    def _note(self, conn: Conn, note_id: int) -> Note:
        notes = self._notes_where(conn, sql.SQL("n.id = %s"), (note_id,))
        if not notes:
            raise UnknownRecordError(f"note {note_id} not found")
        return notes[0]

    # ------------------------------------------------------------------ flags
    def list_flags(self, *, actor: Actor, status: str | None = "open", kind: str | None = None,
                   person_id: str | None = None, limit: int = 100, before_id: int | None = None,
                   ) -> list[Flag]:
        """Review flags, newest first (evidence names fields, no PHI values); audited."""
        clauses: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        for column, value in (("status", status), ("kind", kind)):
            if value is not None:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if person_id is not None:
            clauses.append(sql.SQL("(person_id = %s OR other_person_id = %s)"))
            params += [person_id, person_id]
        if before_id is not None:
            clauses.append(sql.SQL("id < %s"))
            params.append(before_id)
        with self._tx() as conn:
            with conn.cursor(row_factory=class_row(Flag)) as cur:
                cur.execute(sql.SQL("SELECT " + _FLAG_COLUMNS + " FROM review_flag WHERE {} "  # noqa: S608 - constant SQL fragments; values are parameters
                                    "ORDER BY id DESC LIMIT %s").format(sql.SQL(" AND ").join(clauses)),
                            [*params, limit])
                flags = cur.fetchall()
            self._audit(conn, actor, "crosswalk.flags.list", "review_flag", None,
                        {"status": status, "kind": kind, "person_id": person_id, "count": len(flags)})
            return flags

    def flag_detail(self, flag_id: int, *, actor: Actor) -> FlagDetail:
        """A flag with the incoming and the compared identity side by side (PHI read; audited)."""
        with self._tx() as conn:
            flag = self._flag(conn, flag_id)
            identity = self._identity(conn, flag.identity_id)
            other = self._identity(conn, flag.other_identity_id) if flag.other_identity_id else None
            differing: tuple[str, ...] = tuple(flag.evidence.get("differing_fields", ()))
            if other is not None:
                differing = compare(normalize_phi(_phi_of(identity), self.rules.clinic_key_fields),
                                    normalize_phi(_phi_of(other), self.rules.clinic_key_fields),
                                    self.rules.compared_fields).differing
            self._audit(conn, actor, "crosswalk.flag.read", "review_flag", flag_id,
                        {"identity_ids": [i.id for i in (identity, other) if i is not None]})
            return FlagDetail(flag=flag, identity=identity, other_identity=other, differing_fields=differing)

    def resolve_flag(self, flag_id: int, resolution: str, *, actor: Actor, dismiss: bool = False) -> Flag:
        """Close an open flag with a resolution text (``dismiss=True``: it was a false alarm)."""
        if not resolution.strip():
            raise InvalidChangeError("a resolution needs text")
        with self._tx() as conn:
            self._close_flag(conn, flag_id, resolution, actor, dismiss=dismiss)
            self._audit(conn, actor, "crosswalk.flag.resolve", "review_flag", flag_id,
                        {"status": "dismissed" if dismiss else "resolved"})
            return self._flag(conn, flag_id)

    @staticmethod
    def _close_flag(conn: Conn, flag_id: int, resolution: str, actor: Actor, *,
                    dismiss: bool = False) -> None:
        row = conn.execute("SELECT status FROM review_flag WHERE id = %s FOR UPDATE", (flag_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"flag {flag_id} not found")
        if row[0] != "open":
            raise InvalidChangeError(f"flag {flag_id} is already {row[0]}")
        conn.execute(
            "UPDATE review_flag SET status = %s, resolution = %s, resolved_by = %s, resolved_role = %s, "
            "resolved_at = now(), resolve_request_id = %s WHERE id = %s",
            ("dismissed" if dismiss else "resolved", resolution, actor.name, actor.role, actor.request_id,
             flag_id))

    @staticmethod
    def _flag(conn: Conn, flag_id: int) -> Flag:
        with conn.cursor(row_factory=class_row(Flag)) as cur:
            cur.execute("SELECT " + _FLAG_COLUMNS + " FROM review_flag WHERE id = %s", (flag_id,))  # noqa: S608 - constant SQL fragments; values are parameters
            flag = cur.fetchone()
        if flag is None:
            raise UnknownRecordError(f"flag {flag_id} not found")
        return flag

    # ------------------------------------------------------------------ identities and persons
    @staticmethod
    def _identity(conn: Conn, identity_id: int) -> Identity:
        with conn.cursor(row_factory=class_row(Identity)) as cur:
            cur.execute(sql.SQL("SELECT {} FROM scan_identity s LEFT JOIN identity_link l "
                                "ON l.identity_id = s.id AND l.valid_to IS NULL WHERE s.id = %s")
                        .format(_IDENTITY_COLUMNS), (identity_id,))
            identity = cur.fetchone()
        if identity is None:
            raise UnknownRecordError(f"identity {identity_id} not found")
        return identity

    @staticmethod
    def _require_person(conn: Conn, person_id: str, *, lock: bool = False) -> Person:
        with conn.cursor(row_factory=class_row(Person)) as cur:
            cur.execute("SELECT id::text AS id, pseudonym, alias, sex, status, merged_into::text AS "  # noqa: S608 - constant SQL fragments; values are parameters
                        "merged_into, "
                        "created_at FROM person WHERE id = %s" + (" FOR UPDATE" if lock else ""),
                        (_uuid_or_none(person_id),))
            person = cur.fetchone()
        if person is None:
            raise UnknownRecordError(f"person {person_id} not found")
        return person

    def identity(self, identity_id: int, *, actor: Actor) -> Identity:
        """One scan identity with its current link (PHI read; audited)."""
        with self._tx() as conn:
            identity = self._identity(conn, identity_id)
            self._audit(conn, actor, "crosswalk.identity.read", "identity", identity_id)
            return identity

    def search_persons(self, *, actor: Actor, name: str | None = None, birth_date: str | None = None,
                       patient_id: str | None = None, clinic: str | None = None, limit: int = 50,
                       ) -> list[PersonSummary]:
        """Find persons by PHI: name tokens (normalized, any order), birth date, patient ID, clinic text.

        Criteria combine with AND; at least one is required. A PHI read: audited (which criteria were
        used and how many hits, never the values).
        """
        norm = normalize_phi(PatientPHI(name=name, birth_date=birth_date, patient_id=patient_id))
        clauses: list[str] = []
        params: list[Any] = []
        for token in norm.name.key.split():
            clauses.append("(s.name_alpha LIKE %s OR s.name_key LIKE %s)")
            params += [f"%{token}%", f"%{token}%"]
        if birth_date:
            clauses.append("s.birth_date_norm = %s")
            params.append(norm.birth_date or birth_date)
        if patient_id:
            clauses.append("s.patient_id_norm = %s")
            params.append(norm.patient_id)
        if clinic:
            clauses.append("s.clinic_key LIKE %s")
            params.append("%" + _like_escape(fold_text(clinic)) + "%")
        if not clauses:
            raise InvalidChangeError("search_persons needs at least one criterion")
        query = (
            "SELECT DISTINCT ON (p.id) p.id::text AS person_id, p.pseudonym, p.alias, p.sex, "  # noqa: S608 - constant SQL fragments; values are parameters
            " s.patient_name, s.birth_date, s.patient_id, "
            " coalesce(s.issuer, s.institution, s.calling_aet) AS clinic, "
            " (SELECT count(*) FROM identity_link x WHERE x.person_id = p.id AND x.valid_to IS NULL)::int "
            "   AS identities "
            "FROM scan_identity s JOIN identity_link l ON l.identity_id = s.id AND l.valid_to IS NULL "
            "JOIN person p ON p.id = l.person_id "
            "WHERE " + " AND ".join(clauses) + " ORDER BY p.id, s.id DESC LIMIT %s"
        )
        with self._tx() as conn:
            with conn.cursor(row_factory=class_row(PersonSummary)) as cur:
                cur.execute(query, [*params, limit])
                hits = cur.fetchall()
            self._audit(conn, actor, "crosswalk.search", "person", None,
                        {"criteria": [k for k, v in (("name", name), ("birth_date", birth_date),
                                                     ("patient_id", patient_id), ("clinic", clinic)) if v],
                         "hits": len(hits)})
            return hits

    def person_by_pseudonym(self, pseudonym: str, *, actor: Actor) -> Person:
        """Look a person up by pseudonym (re-identification; audited)."""
        with self._tx() as conn:
            row = conn.execute("SELECT id::text FROM person WHERE pseudonym = %s", (pseudonym,)).fetchone()
            if row is None:
                raise UnknownRecordError("no person with that pseudonym")
            person = self._require_person(conn, str(row[0]))
            self._audit(conn, actor, "crosswalk.person.by_pseudonym", "person", person.id)
            return person

    def person_detail(self, person_id: str, *, actor: Actor) -> PersonDetail:
        """Everything about one person: identities (PHI), link history, studies, notes, flags; audited."""
        with self._tx() as conn:
            person = self._require_person(conn, person_id)
            with conn.cursor(row_factory=class_row(Identity)) as cur:
                cur.execute(sql.SQL(
                    "SELECT {} FROM scan_identity s JOIN identity_link l ON l.identity_id = s.id "
                    "AND l.valid_to IS NULL WHERE l.person_id = %s ORDER BY s.id").format(_IDENTITY_COLUMNS),
                    (person_id,))
                identities = tuple(cur.fetchall())
            with conn.cursor(row_factory=class_row(Link)) as cur:
                cur.execute(
                    "SELECT id, identity_id, person_id::text AS person_id, method, confidence::float8 AS "
                    "confidence, rule, change_id, valid_from, valid_to, created_by, closed_by "
                    "FROM identity_link WHERE person_id = %s OR identity_id IN "
                    "(SELECT identity_id FROM identity_link WHERE person_id = %s) ORDER BY id",
                    (person_id, person_id))
                links = tuple(cur.fetchall())
            with conn.cursor(row_factory=class_row(StudySummary)) as cur:
                cur.execute(
                    "SELECT st.id, st.original_study_uid, st.anon_study_uid, st.accession, st.study_date, "
                    " count(i.id)::int AS instances FROM study st JOIN series se ON se.study_id = st.id "
                    "JOIN instance i ON i.series_id = se.id WHERE i.person_id = %s "
                    "GROUP BY st.id ORDER BY st.study_date NULLS LAST, st.id", (person_id,))
                studies = tuple(cur.fetchall())
            notes = tuple(self._notes_where(conn, sql.SQL("n.person_id = %s"), (person_id,)))
            with conn.cursor(row_factory=class_row(Flag)) as cur:
                cur.execute("SELECT " + _FLAG_COLUMNS + " FROM review_flag WHERE person_id = %s "  # noqa: S608 - constant SQL fragments; values are parameters
                            "OR other_person_id = %s ORDER BY id", (person_id, person_id))
                flags = tuple(cur.fetchall())
            self._audit(conn, actor, "crosswalk.person.read", "person", person_id,
                        {"identities": len(identities), "notes": len(notes)})
            return PersonDetail(person=person, identities=identities, links=links, studies=studies,
                                notes=notes, flags=flags)

    # ------------------------------------------------------------------ changes
    def _change(self, conn: Conn, kind: str, actor: Actor, reason: str, detail: Mapping[str, Any]) -> int:
        if not reason or not reason.strip():
            raise InvalidChangeError(f"a {kind} needs a reason")
        row = conn.execute(
            "INSERT INTO person_change (kind, actor, role, request_id, reason, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (kind, actor.name, actor.role, actor.request_id, reason, Jsonb(dict(detail)))).fetchone()
        assert row is not None
        return int(row[0])

    @staticmethod
    def _emit_republish(conn: Conn, change_id: int, reason: str, instance_rows: Sequence[tuple[Any, ...]],
                        new_person_id: str) -> int:
        """Insert one republish item per (instance id, old person id) row."""
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO republish_item (change_id, instance_id, reason, old_person_id, new_person_id) "
                "VALUES (%s, %s, %s, %s, %s)",
                [(change_id, r[0], reason, r[1], new_person_id) for r in instance_rows])
        return len(instance_rows)

    def confirm(self, identity_id: int, *, actor: Actor, reason: str, flag_id: int | None = None,
                ) -> ChangeResult:
        """An admin confirms an identity belongs to its current person (link becomes ``admin``, 1.0);
        the flag named, if any, is resolved as confirmed."""
        with self._tx() as conn:
            identity = self._identity(conn, identity_id)
            if identity.person_id is None:
                raise InvalidChangeError(f"identity {identity_id} has no current link")
            change_id = self._change(conn, "confirm", actor, reason,
                                     {"identity_id": identity_id, "person_id": identity.person_id})
            self._close_links(conn, [identity_id], actor)
            self._link(conn, identity_id, identity.person_id, method="admin", confidence=1.0,
                       rule="admin_confirm", actor=actor, provenance={"change_id": change_id},
                       change_id=change_id)
            if flag_id is not None:
                self._close_flag(conn, flag_id, "confirmed", actor)
            self._audit(conn, actor, "crosswalk.confirm", "identity", identity_id,
                        {"change_id": change_id, "person_id": identity.person_id, "flag_id": flag_id})
            return ChangeResult(change_id=change_id, kind="confirm", person_ids=(identity.person_id,),
                                identity_ids=(identity_id,))

    def merge(self, keep_person_id: str, merge_person_ids: Sequence[str], *, actor: Actor, reason: str,
              ) -> ChangeResult:
        """Merge persons into ``keep_person_id``: their identities are re-linked (old links closed), their
        instances, studies and notes move, open flags between them are resolved, and every moved instance
        gets a republish item (it must be re-published under the kept pseudonym)."""
        others = list(dict.fromkeys(merge_person_ids))
        if not others or keep_person_id in others:
            raise InvalidChangeError("merge needs other persons than the one kept")
        with self._tx() as conn:
            for pid in sorted([keep_person_id, *others]):  # lock in one order
                person = self._require_person(conn, pid, lock=True)
                if person.status != "active":
                    raise InvalidChangeError(f"person {pid} is already merged")
            change_id = self._change(conn, "merge", actor, reason, {"kept": keep_person_id, "merged": others})
            moved = [int(r[0]) for r in conn.execute(
                "SELECT identity_id FROM identity_link WHERE person_id = ANY(%s::uuid[]) AND "
                "valid_to IS NULL",
                (others,)).fetchall()]
            self._close_links(conn, moved, actor)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO identity_link (identity_id, person_id, method, confidence, rule, "
                    "provenance, "
                    "change_id, created_by) VALUES (%s, %s, 'admin', 1.0, 'admin_merge', %s, %s, %s)",
                    [(i, keep_person_id, Jsonb({"change_id": change_id}), change_id, actor.name)
                     for i in moved])
            conn.execute("UPDATE person SET status = 'merged', merged_into = %s, updated_at = now() "
                         "WHERE id = ANY(%s::uuid[])", (keep_person_id, others))
            instances = conn.execute(
                "UPDATE instance i SET person_id = %s, state = 'republish_pending', updated_at = now() "
                "FROM instance o WHERE o.id = i.id AND i.person_id = ANY(%s::uuid[]) "
                "RETURNING i.id, o.person_id", (keep_person_id, others)).fetchall()
            conn.execute("UPDATE study SET person_id = %s, updated_at = now() WHERE person_id = "
                         "ANY(%s::uuid[])",
                         (keep_person_id, others))
            items = self._emit_republish(conn, change_id, "merge", instances, keep_person_id)
            self._move_notes(conn, others, keep_person_id)
            conn.execute(
                "UPDATE review_flag SET status = 'resolved', resolution = 'merged', resolved_by = %s, "
                "resolved_role = %s, resolved_at = now(), resolve_request_id = %s "
                "WHERE status = 'open' AND person_id = ANY(%s::uuid[]) AND other_person_id = ANY(%s::uuid[])",
                (actor.name, actor.role, actor.request_id, [keep_person_id, *others],
                 [keep_person_id, *others]))
            self._audit(conn, actor, "crosswalk.merge", "person", keep_person_id,
                        {"change_id": change_id, "merged": others, "identities": len(moved),
                         "republish_items": items})
            return ChangeResult(change_id=change_id, kind="merge", person_ids=(keep_person_id, *others),
                                identity_ids=tuple(moved), republish_items=items)

    @staticmethod
    def _move_notes(conn: Conn, from_persons: Sequence[str], to_person: str) -> None:
        seen = {r[0] for r in conn.execute(
            "SELECT origin_sha256 FROM note WHERE person_id = %s AND source = "
            "'dicom'", (to_person,)).fetchall()}
        for note_id, source, digest in conn.execute(
                "SELECT id, source, origin_sha256 FROM note WHERE person_id = ANY(%s::uuid[]) ORDER BY id",
                (list(from_persons),)).fetchall():
            if source == "dicom" and digest in seen:
                continue  # identical text already on the kept person; the duplicate stays where it was
            seen.add(digest)
            conn.execute("UPDATE note SET person_id = %s WHERE id = %s", (to_person, note_id))

    def split(self, person_id: str, identity_ids: Sequence[int], *, actor: Actor, reason: str,
              ) -> ChangeResult:
        """Move ``identity_ids`` (with their corrections) out of a person into a new person; their
        instances move too and get republish items (new pseudonym)."""
        with self._tx() as conn:
            person = self._require_person(conn, person_id, lock=True)
            if person.status != "active":
                raise InvalidChangeError(f"person {person_id} is merged; split its survivor")
            chain = [int(r[0]) for r in conn.execute(
                "WITH RECURSIVE chain(id) AS (SELECT unnest(%s::bigint[]) UNION "
                " SELECT s.id FROM chain c JOIN scan_identity t ON t.id = c.id "
                " JOIN scan_identity s ON s.corrects_id = c.id OR s.id = t.corrects_id) "
                "SELECT c.id FROM chain c JOIN identity_link l ON l.identity_id = c.id AND "
                "l.valid_to IS NULL "
                "AND l.person_id = %s ORDER BY c.id", (list(identity_ids), person_id)).fetchall()]
            if not set(identity_ids) <= set(chain):
                raise InvalidChangeError("every identity to split out must belong to the person")
            remaining = conn.execute(
                "SELECT count(*) FROM identity_link WHERE person_id = %s AND valid_to IS NULL "
                "AND NOT identity_id = ANY(%s)", (person_id, chain)).fetchone()
            if remaining is None or remaining[0] == 0:
                raise InvalidChangeError("a split must leave at least one identity with the person")
            sex_row = conn.execute("SELECT sex_norm FROM scan_identity WHERE id = ANY(%s) AND "
                                   "sex_norm IS NOT NULL "
                                   "ORDER BY id DESC LIMIT 1", (chain,)).fetchone()
            new_person_id, _, _ = self._new_person(conn, sex_row[0] if sex_row else None, actor)
            change_id = self._change(conn, "split", actor, reason,
                                     {"from": person_id, "to": new_person_id, "identities": chain})
            self._close_links(conn, chain, actor)
            for identity_id in chain:
                self._link(conn, identity_id, new_person_id, method="admin", confidence=1.0,
                           rule="admin_split",
                           actor=actor, provenance={"change_id": change_id}, change_id=change_id)
            instances = conn.execute(
                "UPDATE instance i SET person_id = %s, state = 'republish_pending', updated_at = now() "
                "FROM instance o WHERE o.id = i.id AND i.person_id = %s AND i.identity_id = ANY(%s) "
                "RETURNING i.id, o.person_id", (new_person_id, person_id, chain)).fetchall()
            conn.execute(
                "UPDATE study st SET person_id = %s, updated_at = now() WHERE st.person_id = %s AND EXISTS "
                "(SELECT 1 FROM series se JOIN instance i ON i.series_id = se.id WHERE se.study_id = st.id "
                " AND i.person_id = %s) AND NOT EXISTS (SELECT 1 FROM series se JOIN instance i "
                " ON i.series_id = se.id WHERE se.study_id = st.id AND i.person_id = %s)",
                (new_person_id, person_id, new_person_id, person_id))
            items = self._emit_republish(conn, change_id, "split", instances, new_person_id)
            self._audit(conn, actor, "crosswalk.split", "person", person_id,
                        {"change_id": change_id, "new_person_id": new_person_id, "identities": chain,
                         "republish_items": items})
            return ChangeResult(change_id=change_id, kind="split", person_ids=(person_id, new_person_id),
                                identity_ids=tuple(chain), republish_items=items, new_person_id=new_person_id)

    def correct_phi(self, identity_id: int, changes: Mapping[str, Any], *, actor: Actor, reason: str,
                    ) -> ChangeResult:
        """Record a correction: a NEW scan identity pointing at ``identity_id`` (which stays as it
        arrived), linked to the same person. A corrected sex changes the person's sex and alias, and the
        person's instances are then re-published."""
        unknown = set(changes) - set(CORRECTABLE)
        if unknown or not changes:
            raise InvalidChangeError(f"correctable fields are {sorted(CORRECTABLE)}")
        with self._tx() as conn:
            current = self._identity(conn, identity_id)
            if current.superseded_by is not None:
                raise InvalidChangeError(
                    f"identity {identity_id} was already corrected by {current.superseded_by}; "
                    "correct that one")
            if current.person_id is None:
                raise InvalidChangeError(f"identity {identity_id} has no current link")
            values = {f.name: getattr(current, f.name) for f in dataclasses.fields(Identity)}
            for key, value in changes.items():
                values[CORRECTABLE[key]] = value
            phi = PatientPHI(patient_id=values["patient_id"], issuer=values["issuer"],
                             name=values["patient_name"], birth_date=values["birth_date"], sex=values["sex"],
                             other_ids=tuple(values["other_ids"] or ()), institution=values["institution"],
                             calling_aet=values["calling_aet"])
            norm = normalize_phi(phi, self.rules.clinic_key_fields)
            change_id = self._change(conn, "correction", actor, reason,
                                     {"identity_id": identity_id, "fields": sorted(changes)})
            new_id = self._insert_identity(conn, phi, norm, kind="correction", fingerprint=None,
                                           source=f"correction:{change_id}", actor=actor,
                                           corrects_id=identity_id, reason=reason)
            self._link(conn, new_id, current.person_id, method="admin", confidence=1.0,
                       rule="admin_correction", actor=actor, provenance={"change_id": change_id},
                       change_id=change_id)
            items = 0
            person = self._require_person(conn, current.person_id, lock=True)
            if "sex" in changes and norm.sex and norm.sex != person.sex:
                conn.execute("UPDATE person SET sex = %s, alias = %s, updated_at = now() WHERE id = %s",
                             (norm.sex, alias_for(person.pseudonym, norm.sex), person.id))
                instances = conn.execute(
                    "UPDATE instance SET state = 'republish_pending', updated_at = now() WHERE "
                    "person_id = %s "
                    "RETURNING id, person_id", (person.id,)).fetchall()
                items = self._emit_republish(conn, change_id, "correction", instances, person.id)
            self._audit(conn, actor, "crosswalk.correct_phi", "identity", identity_id,
                        {"change_id": change_id, "new_identity_id": new_id, "fields": sorted(changes),
                         "republish_items": items})
            return ChangeResult(change_id=change_id, kind="correction", person_ids=(current.person_id,),
                                identity_ids=(identity_id, new_id), republish_items=items,
                                new_identity_id=new_id)

    # ------------------------------------------------------------------ republish queue (pipeline)
    def claim_republish_items(self, limit: int = 10, *, actor: Actor = SYSTEM_ACTOR,
                              stale_after_s: int = 600) -> list[RepublishItem]:
        """Claim up to ``limit`` pending items (``FOR UPDATE SKIP LOCKED``: workers never share one);
        an item claimed longer than ``stale_after_s`` ago is handed out again."""
        with self._tx() as conn:
            with conn.cursor(row_factory=class_row(RepublishItem)) as cur:
                cur.execute(
                    "WITH claimed AS (SELECT * FROM claim_republish_items(%s, make_interval(secs => %s))) "
                    "SELECT c.id, c.change_id, c.instance_id, c.reason, i.original_sop_uid, i.anon_sop_uid, "
                    " i.intake_key, i.research_key, op.pseudonym AS old_pseudonym, "
                    " np.id::text AS new_person_id, np.pseudonym AS new_pseudonym, np.alias AS new_alias, "
                    " c.attempts "
                    "FROM claimed c JOIN instance i ON i.id = c.instance_id "
                    "JOIN person np ON np.id = c.new_person_id LEFT JOIN person op ON op.id = "
                    "c.old_person_id "
                    "ORDER BY c.id", (limit, stale_after_s))
                items = cur.fetchall()
            if items:
                self._audit(conn, actor, "crosswalk.republish.claim", "republish_item", None,
                            {"ids": [i.id for i in items]})
            return items

    def complete_republish_item(self, item_id: int, *, actor: Actor = SYSTEM_ACTOR,
                                research_key: str | None = None) -> bool:
        """Mark an item done (and its instance ``published``); False when it was already done."""
        with self._tx() as conn:
            row = conn.execute("SELECT complete_republish_item(%s)", (item_id,)).fetchone()
            done = bool(row and row[0])
            if done:
                conn.execute(
                    "UPDATE instance SET state = 'published', research_key = COALESCE(%s, research_key), "
                    "updated_at = now() WHERE id = (SELECT instance_id FROM republish_item WHERE id = %s) "
                    "AND NOT EXISTS (SELECT 1 FROM republish_item r WHERE r.instance_id = instance.id "
                    "AND r.status <> 'done')", (research_key, item_id))
                self._audit(conn, actor, "crosswalk.republish.complete", "republish_item", item_id)
            return done

    # ------------------------------------------------------------------ audit query
    def audit_query(self, *, actor: Actor, actor_name: str | None = None, action: str | None = None,
                    target_type: str | None = None, target_id: str | None = None,
                    since: datetime | None = None, until: datetime | None = None, limit: int = 100,
                    before_id: int | None = None) -> list[AuditEntry]:
        """Audit rows, newest first, filtered; the query itself is audited."""
        clauses: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        for column, value in (("actor", actor_name), ("action", action), ("target_type", target_type),
                              ("target_id", target_id)):
            if value is not None:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if since is not None:
            clauses.append(sql.SQL("at >= %s"))
            params.append(since)
        if until is not None:
            clauses.append(sql.SQL("at < %s"))
            params.append(until)
        if before_id is not None:
            clauses.append(sql.SQL("id < %s"))
            params.append(before_id)
        with self._tx() as conn:
            with conn.cursor(row_factory=class_row(AuditEntry)) as cur:
                cur.execute(sql.SQL("SELECT id, at, actor, role, action, target_type, target_id, request_id, "
                                    "detail FROM audit_log WHERE {} ORDER BY id DESC LIMIT %s")
                            .format(sql.SQL(" AND ").join(clauses)), [*params, limit])
                rows = cur.fetchall()
            self._audit(conn, actor, "crosswalk.audit.query", "audit_log", None,
                        {"filters": [k for k, v in (("actor", actor_name), ("action", action),
                                                    ("target_type", target_type), ("target_id", target_id),
                                                    ("since", since), ("until", until)) if v is not None],
                         "count": len(rows)})
            return rows


def _phi_of(identity: Identity) -> PatientPHI:
    return PatientPHI(patient_id=identity.patient_id, issuer=identity.issuer, name=identity.patient_name,
                      birth_date=identity.birth_date, sex=identity.sex, other_ids=tuple(identity.other_ids),
                      institution=identity.institution, calling_aet=identity.calling_aet)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _uuid_or_none(value: str) -> str | None:
    """Person ids are UUIDs; anything else cannot exist (and must not reach the uuid cast as an error)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


class PgPseudonymProvider:
    """``tmi.ports.PseudonymProvider`` backed by the crosswalk: ``assign`` resolves the PHI by the
    matching rules and returns the person's random pseudonym and alias.

    ``last_resolution`` keeps the full :class:`Resolution` (identity id for ``record_instance``); use one
    provider per worker thread. PHI with no patient ID, name or birth date raises
    ``PoisonInputError("crosswalk.no_patient_identity")``: quarantine such instances."""

    def __init__(self, service: CrosswalkService, *, actor: Actor = SYSTEM_ACTOR, source: str | None = None,
                 ) -> None:
        self._service = service
        self._actor = actor
        self._source = source
        self.last_resolution: Resolution | None = None

    def assign(self, phi: PatientPHI) -> PseudonymAssignment:
        resolution = self._service.resolve(phi, source=self._source, actor=self._actor)
        self.last_resolution = resolution
        return PseudonymAssignment(pseudonym=resolution.pseudonym, alias=resolution.alias,
                                   person_id=resolution.person_id, flags=resolution.flags)
