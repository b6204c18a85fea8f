-- SingleStore Code Engine compatibility (docs/singlestore.md): the statements a
-- SingleStore user already has, run unchanged. `nox -s demo` assembles
-- build/singlestore/ (split.wasm from split.wat, the .wit, and s2demo.tar, a
-- SingleStore extension archive of both) and runs this script from the
-- repository root.

-- The canonical ABI (wit-bindgen 0.2 core module + old-dialect WIT); the
-- signature comes from the WIT, and `power-of` is called as power_of.
CREATE FUNCTION power_of AS WASM
    FROM LOCAL INFILE 'build/singlestore/split.wasm'
    WITH WIT FROM LOCAL INFILE 'build/singlestore/split.wit';

-- list<record> results make a table-valued function.
CREATE FUNCTION split_str AS WASM
    FROM LOCAL INFILE 'build/singlestore/split.wasm'
    WITH WIT FROM LOCAL INFILE 'build/singlestore/split.wit';

SELECT power_of(2, 10) AS kib;
SELECT * FROM split_str('wasm rocks the house', ' ');
SELECT s.str, power_of(2, s.idx) AS weight
FROM split_str('a,bb,ccc', ',') AS s ORDER BY s.idx;

-- USING EXPORT binds any SQL name to any export, with a declared signature.
CREATE FUNCTION pow32(b INT, e INT) RETURNS INT AS WASM
    FROM LOCAL INFILE 'build/singlestore/split.wasm'
    WITH WIT FROM LOCAL INFILE 'build/singlestore/split.wit'
    USING EXPORT 'power-of';
SELECT pow32(3, 4);

-- The same functions from SingleStore's extension archive format.
DROP FUNCTION power_of;
DROP FUNCTION split_str;
CREATE EXTENSION s2demo FROM LOCAL INFILE 'build/singlestore/s2demo.tar';
SHOW EXTENSIONS;
SELECT count(*) AS pieces FROM split_str('x y z', ' ');
