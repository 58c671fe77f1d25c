"""The views over paretune's tables: the SQL users query, and the one definition of each rule.

They hold no data. `storage/schema.py` drops and recreates them whenever a file migrates, so a
view changes by editing `VIEWS` here and appending a migration (an empty one will do) that makes
older files pick it up. The README's SQL section documents them for users.
"""

VIEWS = """
-- One row per (completed observation, thresholded metric): the value against its threshold.
CREATE VIEW threshold_checks AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id,
       m.name AS metric, m.strategy, m.objective, m.threshold, v.value, v.value_stddev,
       coalesce(CASE WHEN m.objective = 'maximize' THEN v.value >= m.threshold
                     ELSE v.value <= m.threshold END, false) AS meets
FROM observations o
JOIN experiment_metrics m ON m.experiment_id = o.experiment_id AND m.threshold IS NOT NULL
LEFT JOIN observation_values v ON v.observation_id = o.id AND v.metric = m.name
WHERE NOT o.failed AND NOT o.stopped;

-- Per observation: does it meet every threshold, and which it meets or violates.
CREATE VIEW threshold_report AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id, o.failed, o.failure_reason,
       NOT o.failed AND NOT o.stopped AND coalesce(bool_and(t.meets), true) AS meets_all,
       coalesce(list(t.metric ORDER BY t.metric) FILTER (WHERE t.meets), []) AS met,
       coalesce(list(t.metric ORDER BY t.metric) FILTER (WHERE NOT t.meets), []) AS violated
FROM observations o
LEFT JOIN threshold_checks t ON t.observation_id = o.id
GROUP BY o.experiment_id, o.id, o.suggestion_id, o.failed, o.failure_reason, o.stopped;

-- Per completed observation, in one grouped pass: its optimized values and how many of its
-- experiment's thresholds it meets.
CREATE VIEW observation_scores AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id,
       any_value(m.name) FILTER (WHERE m.optimize_rank = 1) AS metric_1,
       any_value(m.objective) FILTER (WHERE m.optimize_rank = 1) AS objective_1,
       max(v.value) FILTER (WHERE m.optimize_rank = 1) AS value_1,
       any_value(m.name) FILTER (WHERE m.optimize_rank = 2) AS metric_2,
       any_value(m.objective) FILTER (WHERE m.optimize_rank = 2) AS objective_2,
       max(v.value) FILTER (WHERE m.optimize_rank = 2) AS value_2,
       count(*) FILTER (WHERE CASE WHEN m.objective = 'maximize' THEN v.value >= m.threshold
                                   ELSE v.value <= m.threshold END) AS thresholds_met
FROM observations o
JOIN observation_values v ON v.observation_id = o.id
JOIN experiment_metrics m ON m.experiment_id = o.experiment_id AND m.name = v.metric
WHERE NOT o.failed AND NOT o.stopped
GROUP BY o.experiment_id, o.id, o.suggestion_id;

-- Each suggestion's trial number within its experiment (1, 2, 3... in the order they were
-- handed out): the number people read in logs, task-run names, reports and the dashboard; the
-- global `suggestion_id` stays the key in the data.
CREATE VIEW trial_numbers AS
SELECT experiment_id, id AS suggestion_id,
       row_number() OVER (PARTITION BY experiment_id ORDER BY id) AS trial
FROM suggestions;

CREATE VIEW experiment_shape AS
SELECT experiment_id,
       count(*) FILTER (WHERE threshold IS NOT NULL) AS thresholds,
       count(*) FILTER (WHERE optimize_rank IS NOT NULL) AS optimized
FROM experiment_metrics GROUP BY experiment_id;

-- Completed observations that meet every threshold and carry every optimized value.
CREATE VIEW feasible_scores AS
SELECT s.*
FROM observation_scores s
JOIN experiment_shape e ON e.experiment_id = s.experiment_id
WHERE s.thresholds_met = e.thresholds
  AND s.value_1 IS NOT NULL AND (e.optimized = 1 OR s.value_2 IS NOT NULL);

CREATE VIEW feasible_observations AS
SELECT o.* FROM observations o JOIN feasible_scores f ON f.observation_id = o.id;

-- What each observation cost in budget units: its task's cost (SigOpt's multitask), else 1; a
-- stopped trial's times the share of its checkpoints it trained (its fidelity).
CREATE VIEW observation_costs AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id, o.task,
       coalesce(t.cost, 1.0) * coalesce(o.fidelity, 1.0) AS cost
FROM observations o
LEFT JOIN experiment_tasks t ON t.experiment_id = o.experiment_id AND t.name = o.task;

-- Every parameter and conditional of every observation, NULL where its conditions left it out.
CREATE VIEW observation_parameters AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id, p.name AS parameter, p.type,
       json_extract(s.assignments, '$."' || p.name || '"') AS value,
       json_extract(s.assignments, '$."' || p.name || '"') IS NOT NULL AS active
FROM observations o
JOIN suggestions s ON s.id = o.suggestion_id
JOIN experiment_parameters p ON p.experiment_id = o.experiment_id;

-- The Pareto frontier of each experiment over its (one or two) optimized metrics, by a
-- sort-and-scan: scores are oriented so larger is better; within each distinct first score only
-- the best second score survives, and it must beat every point with a larger first score. Only
-- full-cost observations compete (a cheaper task's values inform the search, not the result).
-- Every trial's checkpoint curve (`checkpoint`: 1 for its first) with where it was told to stop:
-- the dashboard's curves and stop points.
CREATE VIEW trial_checkpoints AS
SELECT r.experiment_id, r.suggestion_id, r.id AS run_id, s.state,
       dense_rank() OVER (PARTITION BY c.run_id ORDER BY c.epoch) AS checkpoint, c.epoch, c.metric, c.value,
       (SELECT min(d.checkpoint) FROM stop_decisions d WHERE d.suggestion_id = r.suggestion_id AND d.should_stop)
           AS stop_checkpoint
FROM checkpoints c
JOIN runs r ON r.id = c.run_id
JOIN suggestions s ON s.id = r.suggestion_id;

-- Per experiment: trials stopped early and the compute they saved, in trial checkpoints (a stopped
-- trial saves max_checkpoints minus the checkpoints it reached).
CREATE VIEW early_stopping_summary AS
SELECT o.experiment_id, count(*) FILTER (WHERE o.stopped) AS stopped,
       CAST(json_extract(any_value(e.spec), '$.training_monitor.max_checkpoints') AS INTEGER) AS max_checkpoints,
       coalesce(sum(1.0 - o.fidelity) FILTER (WHERE o.stopped), 0)
           * CAST(json_extract(any_value(e.spec), '$.training_monitor.max_checkpoints') AS INTEGER)
           AS checkpoints_saved,
       coalesce(sum(1.0 - o.fidelity) FILTER (WHERE o.stopped), 0) AS full_trials_saved
FROM observations o JOIN experiments e ON e.id = o.experiment_id
GROUP BY o.experiment_id;

CREATE VIEW pareto_frontier AS
WITH scored AS (
    SELECT f.*,
           CASE WHEN objective_1 = 'maximize' THEN value_1 ELSE -value_1 END AS score_1,
           coalesce(CASE WHEN objective_2 = 'maximize' THEN value_2 ELSE -value_2 END, 0) AS score_2
    FROM feasible_scores f
    JOIN observation_costs c ON c.observation_id = f.observation_id AND c.cost = 1
), best_per_score_1 AS (
    SELECT experiment_id, score_1, max(score_2) AS best_score_2
    FROM scored GROUP BY experiment_id, score_1
), staircase AS (
    SELECT experiment_id, score_1, best_score_2,
           max(best_score_2) OVER (PARTITION BY experiment_id ORDER BY score_1 DESC
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS best_score_2_above
    FROM best_per_score_1
)
SELECT s.experiment_id, s.observation_id, s.suggestion_id,
       s.metric_1, s.value_1, s.metric_2, s.value_2, sg.assignments
FROM scored s
JOIN staircase c ON c.experiment_id = s.experiment_id AND c.score_1 = s.score_1
JOIN suggestions sg ON sg.id = s.suggestion_id
WHERE s.score_2 = c.best_score_2
  AND (c.best_score_2_above IS NULL OR c.best_score_2_above < s.score_2);
"""
