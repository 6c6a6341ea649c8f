-- junction centre, migration 1: what every box publishes, landed by day.
-- Times are timestamptz (UTC on the wire). Tables holding time series are partitioned by day on their
-- time column; the ingester creates each day's partitions before writing to it, and retention drops
-- whole partitions (centre::drop_partitions_before).

CREATE TABLE reports (
    id text NOT NULL,                 -- site/camera/bin_start/bin_seconds: stable across revisions
    bin_start timestamptz NOT NULL,
    revision integer NOT NULL,        -- per id, the highest is kept
    site text NOT NULL,
    camera text NOT NULL,
    bin_seconds integer NOT NULL,
    partial boolean NOT NULL,
    covered_seconds double precision NOT NULL,
    payload jsonb NOT NULL,           -- the whole FlowReport (deploy/schema/flow.v1.json)
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bin_start, id)
) PARTITION BY RANGE (bin_start);
CREATE INDEX ON reports (site, camera, bin_seconds, bin_start);

CREATE TABLE events (
    id text NOT NULL,                 -- site/camera/rule/track/kind/wall: stable, so duplicates collapse
    at timestamptz NOT NULL,
    site text NOT NULL,
    camera text NOT NULL,
    rule text NOT NULL,
    kind text NOT NULL,
    class text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (at, id)
) PARTITION BY RANGE (at);
CREATE INDEX ON events (site, camera, at);

CREATE TABLE detector_events (
    id text NOT NULL,
    at timestamptz NOT NULL,
    site text NOT NULL,
    camera text NOT NULL,
    detector text NOT NULL,
    channel integer NOT NULL,
    event_code integer NOT NULL,      -- ATSPM 82 on, 81 off
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (at, id)
) PARTITION BY RANGE (at);
CREATE INDEX ON detector_events (site, channel, at);

-- The last status of each box (retained topic; "offline" is the box's last will).
CREATE TABLE box_status (
    site text PRIMARY KEY,
    state text NOT NULL,
    version text NOT NULL,
    at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Every message that could not be landed: why, and its bytes as received.
CREATE TABLE dead_letters (
    seq bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic text NOT NULL,
    error text NOT NULL,
    payload bytea NOT NULL
);

-- Turning movements by junction (site) x approach x 15 minutes x movement x class, with PCU: the
-- highest revision of each 15-minute report (the only one kept).
CREATE VIEW movement_volumes_15min AS
SELECT r.site, r.camera, r.bin_start, r.partial, r.covered_seconds, r.revision,
       m->>'from' AS approach, m->>'to' AS exit, m->>'movement' AS movement, m->>'class' AS class,
       (m->>'vehicles')::bigint AS vehicles, (m->>'pcu')::double precision AS pcu
FROM reports r, jsonb_array_elements(r.payload->'movements') m
WHERE r.bin_seconds = 900;

-- Volumes by junction x counter (line) x direction x 15 minutes x class, with PCU.
CREATE VIEW line_volumes_15min AS
SELECT r.site, r.camera, r.bin_start, r.partial, r.covered_seconds, r.revision,
       v->>'counter' AS counter, v->>'direction' AS direction, v->>'class' AS class,
       (v->>'vehicles')::bigint AS vehicles, (v->>'pcu')::double precision AS pcu
FROM reports r, jsonb_array_elements(r.payload->'volumes') v
WHERE r.bin_seconds = 900;

-- Each camera: last report, and how much of the last hour its reports cover (seconds of frames over
-- the hour's reports of the shortest bin length seen; 0 for a camera that reported nothing).
CREATE VIEW camera_status AS
WITH recent AS (
    SELECT site, camera, min(bin_seconds) AS bin_seconds FROM reports
    WHERE bin_start > now() - interval '1 day' GROUP BY site, camera
)
SELECT c.site, c.camera,
       (SELECT max(r.bin_start + make_interval(secs => r.bin_seconds)) FROM reports r
         WHERE r.site = c.site AND r.camera = c.camera) AS last_report_end,
       coalesce((SELECT sum(r.covered_seconds) FROM reports r
         WHERE r.site = c.site AND r.camera = c.camera AND r.bin_seconds = c.bin_seconds
           AND r.bin_start >= now() - interval '1 hour'), 0) / 3600.0 AS coverage_last_hour
FROM recent c;

-- Each box: its last status and whether it is online (the will says offline on a lost connection).
CREATE VIEW box_online AS
SELECT site, state, state = 'online' AS online, at AS status_at, version, received_at AS last_seen
FROM box_status;
