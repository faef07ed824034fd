-- The dashboard's job list by model, newest first: a keyset page reads (model, id) entries below
-- its cursor and stops (without a model, the primary key serves the same walk).
CREATE INDEX jobs_model_order ON jobs (model, id);
