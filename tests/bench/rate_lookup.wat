;; The issue-13 host-query benchmark: rate(id BIGINT) RETURNS DOUBLE runs
;; `SELECT rate FROM cust WHERE id = ?` through heliosdb_query and returns
;; the first row's value (0 when there is none). Hand-written, so what it
;; measures is the host's side of one query, not an SDK's.
(module
  (import "heliosdb" "heliosdb_query" (func $query (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "SELECT rate FROM cust WHERE id = ?")

  (func (export "heliosdb_abi_version") (result i32) (i32.const 1))

  ;; A bump allocator from 64 KiB up, reset by every call.
  (global $heap (mut i32) (i32.const 65536))
  (func (export "heliosdb_alloc") (param $size i32) (param $align i32) (result i32)
    (local $ptr i32) (local $end i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                (i32.shl (memory.size) (i32.const 16))) (i32.const 16)) (i32.const 1)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "rate") (param $id i64) (result f64)
    (local $rows i32)
    (global.set $heap (i32.const 65536))
    ;; params at 1024: u32 count = 1, then tag 1 (integer) and the i64
    (i32.store (i32.const 1024) (i32.const 1))
    (i32.store8 (i32.const 1028) (i32.const 1))
    (i64.store (i32.const 1029) (local.get $id))
    (if (call $query (i32.const 0) (i32.const 34) (i32.const 1024) (i32.const 13) (i32.const 2048))
      (then unreachable))
    ;; rows: u32 ncols (1), u32 len + "rate", u32 nrows, then tag and f64
    (local.set $rows (i32.load (i32.const 2048)))
    (if (result f64) (i32.eqz (i32.load offset=12 (local.get $rows)))
      (then (f64.const 0))
      (else (f64.load offset=17 (local.get $rows)))))
)
