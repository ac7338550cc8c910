CREATE TABLE ae_jobs (
	seq BIGSERIAL NOT NULL, 
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	queue VARCHAR(200) NOT NULL, 
	priority INTEGER NOT NULL, 
	rank INTEGER NOT NULL, 
	status VARCHAR(12) NOT NULL, 
	retry_count INTEGER NOT NULL, 
	max_retries INTEGER NOT NULL, 
	created_at DOUBLE PRECISION NOT NULL, 
	last_updated_at DOUBLE PRECISION NOT NULL, 
	started_at DOUBLE PRECISION, 
	completed_at DOUBLE PRECISION, 
	retry_delay_until DOUBLE PRECISION, 
	ready_queue VARCHAR(200), 
	sort_rank INTEGER NOT NULL, 
	sort_time DOUBLE PRECISION NOT NULL, 
	deadline DOUBLE PRECISION, 
	token VARCHAR(64), 
	worker_id VARCHAR(200), 
	cancel_requested BOOLEAN DEFAULT false NOT NULL, 
	cancel_ttl DOUBLE PRECISION, 
	payload TEXT NOT NULL, 
	result TEXT, 
	error TEXT, 
	progress TEXT, 
	attempts TEXT, 
	logs TEXT, 
	PRIMARY KEY (seq)
);

CREATE INDEX ae_jobs_deadline ON ae_jobs (status, deadline) WHERE deadline IS NOT NULL;

CREATE UNIQUE INDEX ae_jobs_id ON ae_jobs (id);

CREATE INDEX ae_jobs_list ON ae_jobs (status, sort_rank, sort_time, seq);

CREATE INDEX ae_jobs_ready ON ae_jobs (ready_queue, rank, sort_time, seq) WHERE ready_queue IS NOT NULL;

CREATE TABLE ae_counts (
	queue VARCHAR(200) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	status VARCHAR(12) NOT NULL, 
	shard SMALLINT NOT NULL, 
	n BIGINT NOT NULL, 
	PRIMARY KEY (queue, name, status, shard)
);

CREATE TABLE ae_throughput (
	width INTEGER NOT NULL, 
	start BIGINT NOT NULL, 
	shard SMALLINT NOT NULL, 
	completed BIGINT NOT NULL, 
	failed BIGINT NOT NULL, 
	PRIMARY KEY (width, start, shard)
);

CREATE TABLE ae_queues (
	name VARCHAR(200) NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE ae_workers (
	id VARCHAR(200) NOT NULL, 
	host VARCHAR(200) NOT NULL, 
	pid BIGINT NOT NULL, 
	queues TEXT NOT NULL, 
	concurrency INTEGER NOT NULL, 
	started_at DOUBLE PRECISION NOT NULL, 
	heartbeat_at DOUBLE PRECISION NOT NULL, 
	expires_at DOUBLE PRECISION NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE ae_occurrences (
	schedule VARCHAR(200) NOT NULL, 
	at DOUBLE PRECISION NOT NULL, 
	PRIMARY KEY (schedule)
);

CREATE TABLE ae_schema (
	version INTEGER NOT NULL, 
	applied_at DOUBLE PRECISION NOT NULL, 
	PRIMARY KEY (version)
);

INSERT INTO ae_schema (version, applied_at) VALUES (1, 0);
