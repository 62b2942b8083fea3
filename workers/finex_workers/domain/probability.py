"""Probability: a scenario's Bayesian (log-odds) update from its evidence, renormalised within
its group of mutually exclusive scenarios."""

from __future__ import annotations

from psycopg.rows import tuple_row

from finex_workers.core import formulas
from finex_workers.core.errors import UnknownIdError
from finex_workers.domain.ids import Connection


def update_probability(conn: Connection, scenario_id: int) -> list[int]:
    """Recompute a scenario's probability from its prior and all its evidence.

    A standalone scenario is updated alone, in log-odds. A scenario in a group shares one
    normalisation with the rest of the group, so every scenario of the group is recomputed.
    Returns the ids (sorted) whose probability changed: their matrix columns are now stale.

    The group's rows are locked ``FOR NO KEY UPDATE`` in id order first, so two updates of the
    same group run one after the other and the second sees the first's evidence. (``NO KEY``
    because it still lets new evidence rows be inserted: their foreign-key check only takes a
    key-share lock.)
    """
    with conn.transaction():
        cur = conn.cursor(row_factory=tuple_row)
        row = cur.execute("SELECT group_id FROM scenarios WHERE id = %s", (scenario_id,)).fetchone()
        if row is None:
            raise UnknownIdError("scenario_id", [scenario_id])
        group_id = row[0]
        if group_id is None:
            members = cur.execute(
                "SELECT id, prior_probability FROM scenarios WHERE id = %s FOR NO KEY UPDATE",
                (scenario_id,),
            ).fetchall()
        else:
            members = cur.execute(
                "SELECT id, prior_probability FROM scenarios WHERE group_id = %s"
                " ORDER BY id FOR NO KEY UPDATE",
                (group_id,),
            ).fetchall()
        priors: dict[int, float] = {int(r[0]): float(r[1]) for r in members}
        evidence: dict[int, list[float]] = {sid: [] for sid in priors}
        for sid, lr in cur.execute(
            "SELECT scenario_id, likelihood_ratio FROM scenario_evidence"
            " WHERE scenario_id = ANY(%s::bigint[])",
            (list(priors),),
        ):
            evidence[int(sid)].append(float(lr))
        if group_id is None:
            posteriors = {
                sid: formulas.bayes_update_standalone(prior, evidence[sid])
                for sid, prior in priors.items()
            }
        else:
            posteriors = formulas.bayes_update_group(priors, evidence)
        ids = list(posteriors)
        cur.execute(
            "UPDATE scenarios AS s SET probability = v.p, probability_updated_at = now()"
            " FROM unnest(%s::bigint[], %s::float8[]) AS v(id, p)"
            " WHERE s.id = v.id AND s.probability IS DISTINCT FROM v.p"
            " RETURNING s.id",
            (ids, [posteriors[i] for i in ids]),
        )
        return sorted(int(r[0]) for r in cur.fetchall())


def group_members(conn: Connection, scenario_id: int) -> list[int]:
    """The scenarios that share a normalisation with this one, sorted: its whole group, or
    just itself when standalone.

    These are the matrix columns a probability update can make stale. Enqueueing all of them,
    not only the ones :func:`update_probability` reported as changed, also repairs a column
    whose earlier follow-up enqueue was lost (the matrix upsert is a no-op when nothing changed).
    """
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT m.id FROM scenarios AS s JOIN scenarios AS m"
            " ON m.id = s.id OR m.group_id = s.group_id"
            " WHERE s.id = %s ORDER BY m.id",
            (scenario_id,),
        )
        .fetchall()
    )
    if not rows:
        raise UnknownIdError("scenario_id", [scenario_id])
    return [int(r[0]) for r in rows]
