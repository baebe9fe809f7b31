-- TLS certificate management on a single node: making a CA and node
-- certificates, reading them back, chain verification at given times, the
-- status of this node's (unset) files, and every kind of bad input.  Only
-- deterministic facts are printed: never PEM text, serials or dates.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;
\set VERBOSITY default

-- Fixtures made with the openssl CLI (valid for 100 years from 2026):
-- root -> intermediate -> leaf, a certificate signed by that leaf (a leaf
-- used as a CA), an encrypted key and an RSA root with its key.  Made with
--   openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
--     -days 36500 -addext basicConstraints=critical,CA:TRUE ... (roots)
--   openssl x509 -req -CA ... -days 36500 -extfile ... (the others; the
--     intermediate with CA:TRUE, the leaf and "rogue" with CA:FALSE,
--     keyUsage digitalSignature, SAN DNS:leaf.example,IP:192.0.2.7)
--   openssl genpkey -algorithm EC ... -aes256 -pass pass:secret (encrypted)
CREATE TEMP TABLE fx (name text PRIMARY KEY, pem text NOT NULL);
INSERT INTO fx VALUES
('root', $pem$-----BEGIN CERTIFICATE-----
MIIBlDCCATugAwIBAgIUA927F9CztENwu19kf0PCGfUHHIAwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMRml4dHVyZSBSb290MCAXDTI2MTEyNzIyMDQzOFoYDzIxMjYx
MTAzMjIwNDM4WjAXMRUwEwYDVQQDDAxGaXh0dXJlIFJvb3QwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAARWtdT68xYgwLF+NSj0vuELMnzXzu/dA6vuuBy7LLxDH+ou
/S/mtJDbgVOwEBLKd30d2q4zas8lrhntLj17eV0oo2MwYTAdBgNVHQ4EFgQUfR8N
nwoNNqxPoL6VopC9mA7177QwHwYDVR0jBBgwFoAUfR8NnwoNNqxPoL6VopC9mA71
77QwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwCgYIKoZIzj0EAwID
RwAwRAIgUa609kERDIjta2R2Ia6oUj4GSwJJUMRtgCyj2cjrQEACIALzbvCDMWVl
/KC0B3BzBPDE5jGnpNE++Dng6pdr1jh8
-----END CERTIFICATE-----
$pem$),
('root_key', $pem$-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3boEd2VTowLoWrHA
aRY+z1oIEaGgXjsJFFerG/R+NOKhRANCAARWtdT68xYgwLF+NSj0vuELMnzXzu/d
A6vuuBy7LLxDH+ou/S/mtJDbgVOwEBLKd30d2q4zas8lrhntLj17eV0o
-----END PRIVATE KEY-----
$pem$),
('int', $pem$-----BEGIN CERTIFICATE-----
MIIBnDCCAUOgAwIBAgIUQ2JGML44HMcMyXkdpj7kbKQs2VUwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMRml4dHVyZSBSb290MCAXDTI2MTEyNzIyMDQzOVoYDzIxMjYx
MTAzMjIwNDM5WjAfMR0wGwYDVQQDDBRGaXh0dXJlIEludGVybWVkaWF0ZTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABJIsMV+zUxmgeGjdTMQ4EPm+VDFSn9HQxVw2
U7kglGUcVZUYKFqSlFGvUZbjIYvZNCRVbm57P+zxdixgDWkFxBOjYzBhMA8GA1Ud
EwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBSJb0bXAK/k1BjS
uv1L2IdlxZ8UtjAfBgNVHSMEGDAWgBR9Hw2fCg02rE+gvpWikL2YDvXvtDAKBggq
hkjOPQQDAgNHADBEAiBQv+yIlHoGLYKCUCUGjkEaUv6q72Nv4xcMBYS0TFB0rgIg
XqlE1lt4nw2IEzb6hzHCMJScWj2MsPlXGQfYwDe1dj8=
-----END CERTIFICATE-----
$pem$),
('leaf', $pem$-----BEGIN CERTIFICATE-----
MIIB2jCCAYCgAwIBAgIUMMFLiJWPrSL2OzThxlL5ww2j7YcwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwURml4dHVyZSBJbnRlcm1lZGlhdGUwIBcNMjYxMTI3MjIwNDM5
WhgPMjEyNjExMDMyMjA0MzlaMBcxFTATBgNVBAMMDEZpeHR1cmUgTGVhZjBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABDDUS7gi/GFij/SWViK1guamLoj48B9l5VfA
ZNpEkwxd5ZEAXHcZYydSaIirTi0FzJFreNwLmgLDZRSSeZ0BaOSjgZ8wgZwwDAYD
VR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwHQYDVR0lBBYwFAYIKwYBBQUHAwEG
CCsGAQUFBwMCMB0GA1UdEQQWMBSCDGxlYWYuZXhhbXBsZYcEwAACBzAdBgNVHQ4E
FgQUcrLJR8lMijDVU9yPzqYaLzWwg1EwHwYDVR0jBBgwFoAUiW9G1wCv5NQY0rr9
S9iHZcWfFLYwCgYIKoZIzj0EAwIDSAAwRQIhANhP7EkNmNtks+g0QfYQJux7I9ZE
QUkxrYQcKxzzaSCDAiByzsH3UPvAaxEYFC/42s25Y0QV1smhr9uyirhSCWp7Ag==
-----END CERTIFICATE-----
$pem$),
('leaf_key', $pem$-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9omRkyCxs6gnWG72
8HgTE1G7ujQe7UWOTj3esGAD6amhRANCAAQw1Eu4IvxhYo/0llYitYLmpi6I+PAf
ZeVXwGTaRJMMXeWRAFx3GWMnUmiIq04tBcyRa3jcC5oCw2UUknmdAWjk
-----END PRIVATE KEY-----
$pem$),
('rogue', $pem$-----BEGIN CERTIFICATE-----
MIIB0jCCAXmgAwIBAgIUR7y/2b7LRF2IXzhKZ1Rg3r6c1j8wCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMRml4dHVyZSBMZWFmMCAXDTI2MTEyNzIyMDQzOVoYDzIxMjYx
MTAzMjIwNDM5WjAYMRYwFAYDVQQDDA1GaXh0dXJlIFJvZ3VlMFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAE8KPInkBtgYP/tfs+lTHSZm0nyPE5L1JYubfCP/KfZtIK
xD4hM5BCJjQ3lLZOmyi3O7d8hVxfc3NtLPOEK+P816OBnzCBnDAMBgNVHRMBAf8E
AjAAMA4GA1UdDwEB/wQEAwIHgDAdBgNVHSUEFjAUBggrBgEFBQcDAQYIKwYBBQUH
AwIwHQYDVR0RBBYwFIIMbGVhZi5leGFtcGxlhwTAAAIHMB0GA1UdDgQWBBQDbtpp
HIymNWoBoRZ9rXNJjgbk3TAfBgNVHSMEGDAWgBRysslHyUyKMNVT3I/OphovNbCD
UTAKBggqhkjOPQQDAgNHADBEAiAZQSaBFYN/1bQmibQJhrW4QYS4KK0ONo7yKOwg
jtXAqQIgd2xrZ6Fro1aL+Ou08qc+9y/BYH/FP2l8O3EVZBPa5XQ=
-----END CERTIFICATE-----
$pem$),
('enc_key', $pem$-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAiT+5KpbEp3KAICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEECPwDQ6+/lJpy7BK6eLwu58EgZCV
uyOpxGCGKZ5wTMeIT1NoTctUgHeF5uZaf9N+pbSkQNd4DC4a0Vt7cVAd+BIxBJtW
BFG6mXfk8876SAkjtzZBdHX5Xg8dS3VTx0iYKNlY/AHHf+y5e8Wc/GEtwgppLCT4
wgT8XskdCZS9aD3UcYKnDASrbi77nDuzlLmjGRb9A2Dx2EnYsoGGxYon369yZ/8=
-----END ENCRYPTED PRIVATE KEY-----
$pem$),
('rsa_root', $pem$-----BEGIN CERTIFICATE-----
MIIDKTCCAhGgAwIBAgIUAkSciqwLzH+iOLkdFbGn+ADZGjQwDQYJKoZIhvcNAQEL
BQAwGzEZMBcGA1UEAwwQRml4dHVyZSBSU0EgUm9vdDAgFw0yNjExMjcyMjA0Mzla
GA8yMTI2MTEwMzIyMDQzOVowGzEZMBcGA1UEAwwQRml4dHVyZSBSU0EgUm9vdDCC
ASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAJhj5LxFSvhfoHA6y3i2evP3
W80ZwMum1l2MNdXTG4O4a4U6T373aoItlLT0nRlvGkq50wABJfXb6e2srNMERN1g
JIKjKnCdufdJkZF/TU3RG+iacFVtOvjiPcNXu59iCUPmMnMtRHkQCkQHciTuCz7p
J3Ng0LRnLa7iHhw07Y47dVFyOPxVihsGm7fU59sqRkZSR1o4uEu/DUxmbNxAqGQK
99gi2uXNbUj2gy4v6jRKYe2cubAcuaLUOo2mKcnlJTG+ELfrDtekOJPKTxHnWarX
lRA9ihT7woD7Hd+nNxqr5zGuqYzIZfXTC+TATQyyeW4dcAn53GPPWcy6DCGJEO8C
AwEAAaNjMGEwHQYDVR0OBBYEFFWeDqDsOCkNwoKsfXPTtCObIyu6MB8GA1UdIwQY
MBaAFFWeDqDsOCkNwoKsfXPTtCObIyu6MA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0P
AQH/BAQDAgEGMA0GCSqGSIb3DQEBCwUAA4IBAQCEJbFT2SSENOEgYU9CJDY4afbb
fVx+w+o+XaiS9txlQFKmDEJzD6xFGvm16QLwdcrEJNerGq5gxngfM63VOkCR0yRq
v651+aw46E02fIeBDjbvVMWgyWj1LnQpPmLoaiLYONooqMfr1L6LMNGMOfVaZ117
euRNFzAs+yg6zjsIi9GigMFovrSTy0SMxFJma4+7lXIgMHHnNbwquvdbEo49lvtK
3OK05tCTPi0CfNMvznRTZ/Zpwmgx/UxkblgcSOruS1k431uvHUv0ArrHC7gUY2OY
obKp5wxX9fFWGKS4EbuP+I7BNXkQXOq9QKZwBzEsYi1mQd9ZymrRTc5HwXBi
-----END CERTIFICATE-----
$pem$),
('rsa_root_key', $pem$-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCYY+S8RUr4X6Bw
Ost4tnrz91vNGcDLptZdjDXV0xuDuGuFOk9+92qCLZS09J0ZbxpKudMAASX12+nt
rKzTBETdYCSCoypwnbn3SZGRf01N0RvomnBVbTr44j3DV7ufYglD5jJzLUR5EApE
B3Ik7gs+6SdzYNC0Zy2u4h4cNO2OO3VRcjj8VYobBpu31OfbKkZGUkdaOLhLvw1M
ZmzcQKhkCvfYItrlzW1I9oMuL+o0SmHtnLmwHLmi1DqNpinJ5SUxvhC36w7XpDiT
yk8R51mq15UQPYoU+8KA+x3fpzcaq+cxrqmMyGX10wvkwE0MsnluHXAJ+dxjz1nM
ugwhiRDvAgMBAAECggEABAGkUtrThMIm2qyBCvRpOR7IuBS0P+Zr/lugUrXRJF5l
3UPSMTlaAIAoR7Wip7eHDm3iQT7Ge7dDaC9A/+89zEAp1ZFqnTlYWUsC27toEeKs
hCoDSAuuIDr6erdExIT0T2eu7d5DzZcBXhaABr6HZykEE4F5GzUXO2DQf9dYY4Pc
RmNvEWrO4ztlB/LDjeVSuKLbOqP9+QXZ6pk7x1c2GCx1HDhMW8YY2hUoOVQUTKF1
knvLXnNStpzw/Q2A/FLmqXB8kj70GH9PwGpli79T5h1krjBpkGeAF1zkHMSzm8Hn
FSyg4S7nqpqghiSL/u4SuJcCAElMYQCYT/85g85byQKBgQDMjWBshlde3t1hNTB5
xdDmtTLPIrhvjFUtbc4dacPBY5iiZOlH0vTmlX1OpOVrjTdsUHtujNS29ON97WaW
OMlgjoM92RYt/fBg0uT7gVY1an88ov71Zj29nRwmFNzwTM/74zlItuQfHNIoanoA
3/N/xTBcMptEWyZFKuXp3RcSXQKBgQC+t+3sbWTKgTU5a1iUnZ0IgZXB/HuWTaEB
h6eOzgNzDbyUpMoOFeX0LShVTMZQyPxYbTvDJwqfll4mRA6KO2VQ/kk79HIr9sNo
EDbmyL+M7uGDbYcfoVxUZlM75DmBbJzyIS9j1cZvVXfhbobChUnMis4V4K94V48u
ZZMhEvzTuwKBgBrCzECmervAsHnNOaBUzvW/8vvCcRq241XkLbkPYzrjys5EIXjy
EnQwToqBbDpb6UpUZTGbXyDofPK2ols45q+pNWZcBljSBibEsIxu6VZnrmnCcVSt
oZoy+cHJrPYLNpKfsZjfxIyFesEq3PdMVVD7/U2ymTmiKymVaSrlb+VJAoGAXwC0
Th+4I3/1iWLFv1I8FS6n8PfagGavG1n9x48r/LYNCGaGGDokUFvmSYdzCm7z9QCE
0pOyIQkAYUNpksY/k/b3eBwue2PytvXMw22grY2ZXKTEuKbinVBTifQICUaXb63E
M5Ebxf3nN66dBmzq9C74tcE051eGhXAnuEQDGV0CgYEAspBtrSUvizeVJe0cwjhq
yahPZErSZda9f9FX2wDkrm/yvPfyFN1CYRb01MYgb0fUCAXgXCHisGNSMJfcGvtj
2FKLasxgkJ71ypcTzl2GY1PL49TKijzqpGqpyVSxCnzAtV3nN8MBMt6th1TRbe9f
IsBi8IRK8hVEsO6n+DUMXRM=
-----END PRIVATE KEY-----
$pem$);
CREATE FUNCTION fx(text) RETURNS text LANGUAGE sql AS 'SELECT pem FROM fx WHERE name = $1';

-- a CA
CREATE TEMP TABLE ca AS SELECT * FROM mycelium.generate_ca('Mycelium Test CA');
SELECT count(*) AS rows,
       bool_and(certificate LIKE E'-----BEGIN CERTIFICATE-----\n%-----END CERTIFICATE-----\n') AS cert_pem,
       bool_and(private_key LIKE E'-----BEGIN PRIVATE KEY-----\n%-----END PRIVATE KEY-----\n') AS key_pem
  FROM ca;
SELECT subject, issuer, is_ca, dns_names, ip_addresses,
       serial ~ '^[0-9A-F]{1,32}$' AS serial_hex,
       fingerprint_sha256 ~ '^([0-9A-F]{2}:){31}[0-9A-F]{2}$' AS fingerprint_format,
       not_after - not_before AS validity,
       not_before BETWEEN now() - interval '6 min' AND now() AS backdated
  FROM mycelium.certificate_info((SELECT certificate FROM ca));
-- serials are random
SELECT (SELECT serial FROM mycelium.certificate_info((SELECT certificate FROM ca))) <>
       (SELECT serial FROM mycelium.certificate_info(
           (SELECT certificate FROM mycelium.generate_ca('Mycelium Test CA')))) AS serials_differ;
-- a self-signed CA verifies against itself
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM ca), (SELECT certificate FROM ca));

-- node certificates
CREATE TEMP TABLE node1 AS
SELECT * FROM mycelium.generate_certificate('node1',
         (SELECT certificate FROM ca), (SELECT private_key FROM ca), 30,
         ARRAY['node1.example', 'localhost'], ARRAY['127.0.0.1', '::1']);
SELECT subject, issuer, is_ca, dns_names, ip_addresses, not_after - not_before AS validity
  FROM mycelium.certificate_info((SELECT certificate FROM node1));
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), (SELECT certificate FROM ca));
-- the node's key is new, not the CA's
SELECT (SELECT private_key FROM node1) <> (SELECT private_key FROM ca) AS own_key;
-- without names, the common name is the subjectAltName (a DNS name or an IP)
SELECT dns_names, ip_addresses, is_ca FROM mycelium.certificate_info(
  (SELECT certificate FROM mycelium.generate_certificate('node-2.example',
     (SELECT certificate FROM ca), (SELECT private_key FROM ca))));
SELECT dns_names, ip_addresses FROM mycelium.certificate_info(
  (SELECT certificate FROM mycelium.generate_certificate('192.0.2.10',
     (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, '{}', '{}')));
SELECT dns_names, ip_addresses FROM mycelium.certificate_info(
  (SELECT certificate FROM mycelium.generate_certificate('node3',
     (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365,
     ip_addresses => ARRAY['2001:db8::1']))) ;
SELECT dns_names FROM mycelium.certificate_info(
  (SELECT certificate FROM mycelium.generate_certificate('wildcard',
     (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, ARRAY['*.nodes.example']))) ;
-- common names up to 64 characters, non-ASCII kept
SELECT length(subject) FROM mycelium.certificate_info(
  (SELECT certificate FROM mycelium.generate_ca(repeat('x', 64))));
SELECT subject FROM mycelium.certificate_info(
  (SELECT certificate FROM mycelium.generate_ca('Zürich CA, "main"')));

-- verification at other times: expired, not yet valid
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1),
  (SELECT certificate FROM ca), now() + interval '31 days');
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1),
  (SELECT certificate FROM ca), now() - interval '1 day');
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1),
  (SELECT certificate FROM ca), now() + interval '29 days');
-- a foreign CA
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1),
  (SELECT certificate FROM mycelium.generate_ca('Foreign CA')));
-- a bundle with both CAs (rotation) accepts certificates of either
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1),
  (SELECT certificate FROM mycelium.generate_ca('New CA')) || (SELECT certificate FROM ca));
-- a node certificate as the trust anchor
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), (SELECT certificate FROM node1));

-- a CLI-made chain: the intermediate may follow the leaf
SELECT subject, issuer, dns_names, ip_addresses, is_ca FROM mycelium.certificate_info(fx('leaf') || fx('int'));
SELECT is_ca FROM mycelium.certificate_info(fx('int'));
SELECT * FROM mycelium.verify_certificate(fx('leaf') || fx('int'), fx('root'), '2030-01-01');
SELECT * FROM mycelium.verify_certificate(fx('leaf'), fx('root'), '2030-01-01');
SELECT * FROM mycelium.verify_certificate(fx('leaf'), fx('root') || fx('int'), '2030-01-01');
SELECT * FROM mycelium.verify_certificate(fx('leaf') || fx('int'), fx('root'), '2020-01-01');
SELECT * FROM mycelium.verify_certificate(fx('leaf') || fx('int'), fx('root'), '2200-01-01');
-- the intermediate alone is not a trust anchor (no partial chains, as libpq)
SELECT * FROM mycelium.verify_certificate(fx('leaf'), fx('int'), '2030-01-01');
-- a leaf used as a CA
SELECT * FROM mycelium.verify_certificate(fx('rogue') || fx('leaf') || fx('int'), fx('root'), '2030-01-01');
-- a CLI-made RSA CA can issue node certificates
SELECT subject, issuer FROM mycelium.certificate_info(
  (SELECT certificate FROM mycelium.generate_certificate('node4', fx('rsa_root'), fx('rsa_root_key'))));
SELECT v.* FROM mycelium.generate_certificate('node4', fx('rsa_root'), fx('rsa_root_key')) g,
  mycelium.verify_certificate(g.certificate, fx('rsa_root')) v;

-- a certificate that outlives its CA is made, with a warning
CREATE TEMP TABLE short_ca AS SELECT * FROM mycelium.generate_ca('Short CA', 10);
SELECT count(*) FROM mycelium.generate_certificate('node5',
  (SELECT certificate FROM short_ca), (SELECT private_key FROM short_ca), 365);

-- bad input: common names
SELECT * FROM mycelium.generate_ca(NULL);
SELECT * FROM mycelium.generate_ca('');
SELECT * FROM mycelium.generate_ca(repeat('x', 65));
SELECT * FROM mycelium.generate_ca(E'bad\nname');
SELECT * FROM mycelium.generate_certificate('', (SELECT certificate FROM ca), (SELECT private_key FROM ca));
SELECT * FROM mycelium.generate_certificate('not a host name', (SELECT certificate FROM ca), (SELECT private_key FROM ca));
-- bad input: validity
SELECT * FROM mycelium.generate_ca('CA', 0);
SELECT * FROM mycelium.generate_ca('CA', -1);
SELECT * FROM mycelium.generate_ca('CA', 36501);
SELECT * FROM mycelium.generate_ca('CA', NULL);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), -365);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 2147483647);
SELECT count(*) FROM mycelium.generate_ca('Century CA', 36500);
-- bad input: names
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, ARRAY['ok.example', NULL]);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, ARRAY['bad name']);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, ARRAY['a..b']);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, ARRAY['x.example, IP:10.0.0.1']);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, ARRAY[repeat('a', 64) || '.example']);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, NULL, ARRAY['300.1.2.3']);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, NULL, ARRAY['10.0.0.0/8']);
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM ca), 365, NULL, ARRAY['']);
-- bad input: the issuing CA
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM short_ca));
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT private_key FROM node1));
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM node1), (SELECT private_key FROM node1));
SELECT * FROM mycelium.generate_certificate('n', fx('leaf'), fx('leaf_key'));
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), fx('enc_key'));
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), 'not a key');
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), (SELECT certificate FROM ca));
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), '');
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), NULL);
SELECT * FROM mycelium.generate_certificate('n', (SELECT private_key FROM ca), (SELECT private_key FROM ca));
SELECT * FROM mycelium.generate_certificate('n', NULL, (SELECT private_key FROM ca));
-- a truncated key: the message shows no key material
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca),
  substr((SELECT private_key FROM ca), 1, 100) || E'\n-----END PRIVATE KEY-----\n');

-- bad input: certificates
SELECT * FROM mycelium.certificate_info(NULL);
SELECT * FROM mycelium.certificate_info('');
SELECT * FROM mycelium.certificate_info(E' \n\t');
SELECT * FROM mycelium.certificate_info('garbage');
SELECT * FROM mycelium.certificate_info(E'-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
SELECT * FROM mycelium.certificate_info(E'-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
-- truncated base64, with and without the END line
SELECT * FROM mycelium.certificate_info(substr((SELECT certificate FROM ca), 1, 300) || E'\n-----END CERTIFICATE-----\n');
SELECT * FROM mycelium.certificate_info(substr((SELECT certificate FROM ca), 1, 300));
-- a character that is not base64
SELECT * FROM mycelium.certificate_info(overlay((SELECT certificate FROM ca) PLACING '!' FROM 100 FOR 1));
-- a good certificate followed by a broken one
SELECT * FROM mycelium.certificate_info((SELECT certificate FROM ca) || substr((SELECT certificate FROM node1), 1, 200));
-- huge input
SELECT * FROM mycelium.certificate_info(repeat('A', 2 * 1024 * 1024));
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), rpad((SELECT certificate FROM ca), 1100000, ' '));
SELECT * FROM mycelium.generate_certificate('n', (SELECT certificate FROM ca), repeat('k', 1024 * 1024 + 1));
-- just under the limit is accepted
SELECT length(c) < 1024 * 1024 AS under_limit, v.*
  FROM repeat((SELECT certificate FROM ca), 1024 * 1024 / length((SELECT certificate FROM ca))) c,
       mycelium.verify_certificate((SELECT certificate FROM node1), c) v;
-- a private key where a certificate is expected
SELECT * FROM mycelium.certificate_info((SELECT private_key FROM ca));
-- bad input: verification
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), 'garbage');
SELECT * FROM mycelium.verify_certificate('garbage', (SELECT certificate FROM ca));
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), '');
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), NULL);
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), (SELECT certificate FROM ca), NULL);
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), (SELECT certificate FROM ca), 'infinity');
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), (SELECT certificate FROM ca), '10000-01-01');
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), (SELECT certificate FROM ca), '0001-01-01 BC');
SELECT * FROM mycelium.verify_certificate((SELECT certificate FROM node1), (SELECT certificate FROM ca), '9999-12-31 23:00:00+00');

-- error codes: NULL, bad value, malformed PEM, too large
CREATE FUNCTION pg_temp.sqlstate_of(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE query;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;
SELECT q AS query, pg_temp.sqlstate_of(q) AS sqlstate FROM (VALUES
  ('SELECT mycelium.generate_ca(NULL)'),
  ('SELECT mycelium.generate_ca(''x'', 0)'),
  ('SELECT mycelium.certificate_info(''garbage'')'),
  ('SELECT mycelium.certificate_info(E''-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'')'),
  ('SELECT mycelium.certificate_info('''')'),
  ('SELECT mycelium.certificate_info(repeat(''A'', 1048577))'),
  ('SELECT mycelium.generate_certificate(''n'', c.certificate, ''k'') FROM mycelium.generate_ca(''x'') c'),
  ('SELECT mycelium.generate_certificate(''n'', c.certificate, c.private_key, 1, NULL, ARRAY[''x'']) FROM mycelium.generate_ca(''x'') c'),
  ('SELECT mycelium.generate_certificate(''n'', c.certificate, k.private_key) FROM mycelium.generate_ca(''x'') c, mycelium.generate_ca(''y'') k')
) v(q);

-- the backend survived all of that
SELECT 1 AS alive;

-- this node's files: none is configured in the test instance
SELECT * FROM mycelium.local_certificate_status();
SELECT * FROM mycelium.check_certificates();
-- nothing configured, nothing to warn about
SELECT mycelium.check_certificate_expiry();

-- status functions are for superusers; the others for everyone
CREATE ROLE regress_tls_user;
GRANT SELECT ON fx TO regress_tls_user;
SET ROLE regress_tls_user;
SELECT * FROM mycelium.check_certificates();
SELECT * FROM mycelium.local_certificate_status();
SELECT mycelium.check_certificate_expiry();
SELECT subject FROM mycelium.certificate_info(fx('root'));
RESET ROLE;
DROP TABLE fx CASCADE;
DROP ROLE regress_tls_user;
