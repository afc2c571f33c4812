-- The W3C traceparent of the request that accepted the job: each attempt's spans join its trace.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
