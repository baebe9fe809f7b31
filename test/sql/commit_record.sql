-- Commit records kept by a writing node (txn/commit_record.c): bad input to
-- mycelium.keep_commit_record() and mycelium.commit_outcome(), and the
-- keeper's record in the transaction that inserts it.  This node is
-- "regress"; gids name coordinator n1.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;

-- not gids of ours
SELECT mycelium.commit_outcome('foo');
SELECT mycelium.commit_outcome('mycelium_12_');
SELECT mycelium.commit_outcome('mycelium_x_n1');
SELECT mycelium.commit_outcome('mycelium_12_n1.regress');
SELECT mycelium.commit_outcome('mycelium_12_n1.regress.0.5');
SELECT mycelium.commit_outcome('mycelium_12_n1.regress.42.5x');
SELECT mycelium.commit_outcome('mycelium_12_n1..42.5');
SELECT mycelium.commit_outcome(NULL);
SELECT mycelium.gid_coordinator('mycelium_12_n1.regress.42.5'), mycelium.gid_coordinator('mycelium_12_n1'),
       mycelium.gid_coordinator('mycelium_12_n1.regress');

-- kept by another node
SELECT mycelium.commit_outcome('mycelium_12_n1');
SELECT mycelium.commit_outcome('mycelium_12_n1.n2.4242.777');

-- kept here and decided: nothing works for it, no record
SELECT mycelium.commit_outcome('mycelium_12_n1.regress.4242.777');
-- coordinated here in a life that is over, no record
SELECT mycelium.commit_outcome('mycelium_12_regress');

-- keep_commit_record outside the transaction's remote work
SELECT mycelium.keep_commit_record('mycelium_12_n1.regress.4242.777', '{n3}');
BEGIN;
SET LOCAL mycelium.distributed_transaction_id = 'n1:4242:999';
SELECT mycelium.keep_commit_record('mycelium_12_n1.regress.4242.777', '{n3}');
ROLLBACK;
-- a gid without keeper, one kept elsewhere, bad participants
BEGIN;
SET LOCAL mycelium.distributed_transaction_id = 'n1:4242:777';
SELECT mycelium.keep_commit_record('mycelium_12_regress', '{n3}');
ROLLBACK;
BEGIN;
SET LOCAL mycelium.distributed_transaction_id = 'n1:4242:777';
SELECT mycelium.keep_commit_record('mycelium_12_n1.n2.4242.777', '{n3}');
ROLLBACK;
BEGIN;
SET LOCAL mycelium.distributed_transaction_id = 'n1:4242:777';
SELECT mycelium.keep_commit_record('mycelium_12_n1.regress.4242.777', ARRAY['n3', NULL]);
ROLLBACK;
BEGIN;
SET LOCAL mycelium.distributed_transaction_id = 'n1:4242:777';
SELECT mycelium.keep_commit_record('mycelium_12_n1.regress.4242.777', '{{n3},{n4}}');
ROLLBACK;

-- the record, inside the keeper's transaction: shown as committed by n1
BEGIN;
SET LOCAL mycelium.distributed_transaction_id = 'n1:4242:777';
SELECT mycelium.keep_commit_record('mycelium_12_n1.regress.4242.777', '{n3}');
SELECT gid, participants FROM mycelium.commit_record;
SELECT gid, coordinator, participants, state FROM mycelium.distributed_transactions;
-- twice in one transaction: the primary key refuses it
SELECT mycelium.keep_commit_record('mycelium_12_n1.regress.4242.777', '{n3}');
ROLLBACK;
SELECT mycelium.commit_outcome('mycelium_12_n1.regress.4242.777');
SELECT count(*) FROM mycelium.commit_record;

-- any role may keep a record (remote work runs as the user's role)
CREATE ROLE keeper_user;
SET ROLE keeper_user;
BEGIN;
SET LOCAL mycelium.distributed_transaction_id = 'n1:4242:778';
SELECT mycelium.keep_commit_record('mycelium_13_n1.regress.4242.778', '{n3}');
SELECT mycelium.commit_outcome('mycelium_13_n1.regress.4242.778');
ROLLBACK;
RESET ROLE;
DROP ROLE keeper_user;
