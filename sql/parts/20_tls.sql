-- Mycelium install script, part 20: TLS certificate management (make,
-- inspect, verify and check certificates; see docs/security.md).

CREATE FUNCTION mycelium.generate_ca(common_name text, valid_days int DEFAULT 3650,
	OUT certificate text, OUT private_key text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mycelium_generate_ca'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.generate_ca(text, int) IS 'make a self-signed CA certificate and its EC P-256 private key (PEM)';

CREATE FUNCTION mycelium.generate_certificate(common_name text,
	ca_certificate text, ca_private_key text, valid_days int DEFAULT 365,
	dns_names text[] DEFAULT NULL, ip_addresses text[] DEFAULT NULL,
	OUT certificate text, OUT private_key text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mycelium_generate_certificate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.generate_certificate(text, text, text, int, text[], text[]) IS 'make a node certificate (TLS server and client) signed by a CA, and its EC P-256 private key (PEM)';

CREATE FUNCTION mycelium.certificate_info(certificate text,
	OUT subject text, OUT issuer text, OUT serial text,
	OUT not_before timestamptz, OUT not_after timestamptz,
	OUT fingerprint_sha256 text, OUT dns_names text[],
	OUT ip_addresses text[], OUT is_ca bool)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mycelium_certificate_info'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION mycelium.certificate_info(text) IS 'describe the first certificate of a PEM text';

CREATE FUNCTION mycelium.verify_certificate(certificate text, ca_bundle text,
	at timestamptz DEFAULT now(), OUT valid bool, OUT error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mycelium_verify_certificate'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION mycelium.verify_certificate(text, text, timestamptz) IS 'check that a certificate (followed by any intermediates) chains up to a CA of the bundle at a given time';

CREATE FUNCTION mycelium.local_certificate_status(
	OUT node_name text, OUT subject text, OUT not_after timestamptz,
	OUT days_left int, OUT valid bool, OUT error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mycelium_local_certificate_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.local_certificate_status() IS 'check this node''s configured certificate, key and CA files';

CREATE FUNCTION mycelium.check_certificate_expiry()
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_check_certificate_expiry'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.check_certificate_expiry() IS 'log a warning now for each configured certificate that has expired or expires soon';

-- One row per certificate of every node; a node that cannot be asked gives
-- one row with valid = false and the reason.
CREATE FUNCTION mycelium.check_certificates(
	OUT node_name text, OUT subject text, OUT not_after timestamptz,
	OUT days_left int, OUT valid bool, OUT error text)
RETURNS SETOF record
LANGUAGE sql VOLATILE
AS $$
SELECT r.node_name,
       e.row->>'subject',
       (e.row->>'not_after')::timestamptz,
       (e.row->>'days_left')::int,
       r.success AND coalesce((e.row->>'valid')::bool, false),
       CASE WHEN r.success THEN e.row->>'error' ELSE r.result END
  FROM mycelium.run_command_on_nodes(
         'SELECT json_agg(s) FROM mycelium.local_certificate_status() s') r
  LEFT JOIN LATERAL json_array_elements(CASE WHEN r.success THEN r.result::json END)
       WITH ORDINALITY AS e(row, n) ON true
 ORDER BY r.node_name, e.n
$$;
COMMENT ON FUNCTION mycelium.check_certificates() IS 'check the configured certificate, key and CA files of every node';

-- The status functions read files named by superuser-only settings.
REVOKE ALL ON FUNCTION mycelium.local_certificate_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.check_certificates() FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.check_certificate_expiry() FROM PUBLIC;
