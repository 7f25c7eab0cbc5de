-- A structure deactivated as a whole by the national team (product.md §4.7): when, by whom and
-- why. `active` already stops its pages, its mandates' creation and use.
ALTER TABLE structures
    ADD COLUMN deactivated_at      timestamptz,
    ADD COLUMN deactivated_by      uuid,
    ADD COLUMN deactivation_reason text;
