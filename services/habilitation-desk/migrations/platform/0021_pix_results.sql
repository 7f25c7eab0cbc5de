-- Pix certification results (product.md §4.4), one per habilitation file: imported by the
-- national team from Pix's CSV; a file keeps its first result (nothing is imported twice).
CREATE TABLE pix_results (
    file_id      uuid PRIMARY KEY REFERENCES habilitation_file_index (file_id),
    score        integer NOT NULL CHECK (score BETWEEN 0 AND 1024),
    certified_on date NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    imported_by  uuid
);
