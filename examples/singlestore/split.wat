;; split.wit as wit-bindgen 0.2 compiled it (Rust, wasm32-wasi reactor):
;; canonical_abi_realloc/free over an allocator that counts live allocations,
;; `_initialize` run once by the host, results larger than one value returned
;; through a static return area.
(module
  (memory (export "memory") 1)

  ;; The static return area (RET_AREA in wit-bindgen's Rust output).
  (global $ret i32 (i32.const 16))

  ;; --- allocator ------------------------------------------------------------
  ;; A bump allocator that counts live allocations and starts over when the
  ;; last one is freed: if the host leaks a single buffer, the count never
  ;; returns to 0 and memory keeps growing, so the tests see it.
  (global $heap_base i32 (i32.const 1024))
  (global $heap (mut i32) (i32.const 0))   ;; set by _initialize
  (global $live (mut i32) (i32.const 0))
  (global $inits (mut i32) (i32.const 0))

  (func $alloc (param $align i32) (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    ;; Rust's canonical_abi_realloc: a zero-sized allocation is `align`.
    (if (i32.eqz (local.get $size)) (then (return (local.get $align))))
    ;; Allocating before _initialize ran is a host bug.
    (if (i32.eqz (global.get $heap)) (then unreachable))
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then unreachable))))   ;; Rust aborts when it cannot allocate
    (global.set $heap (local.get $end))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (local.get $p))

  (func $free (param $ptr i32) (param $size i32) (param $align i32)
    (if (i32.eqz (local.get $size)) (then (return)))
    ;; Freeing the static return area, a pointer never handed out, or more
    ;; buffers than are live: the host broke the ownership rules.
    (if (i32.lt_u (local.get $ptr) (global.get $heap_base)) (then unreachable))
    (if (i32.ge_u (local.get $ptr) (global.get $heap)) (then unreachable))
    (if (i32.eqz (global.get $live)) (then unreachable))
    (global.set $live (i32.sub (global.get $live) (i32.const 1)))
    (if (i32.eqz (global.get $live)) (then (global.set $heap (global.get $heap_base)))))

  (func (export "canonical_abi_realloc")
        (param $old i32) (param $old_size i32) (param $align i32) (param $new_size i32)
        (result i32)
    (local $p i32)
    (local.set $p (call $alloc (local.get $align) (local.get $new_size)))
    (if (local.get $old_size)
      (then
        (memory.copy (local.get $p) (local.get $old)
          (select (local.get $old_size) (local.get $new_size)
                  (i32.lt_u (local.get $old_size) (local.get $new_size))))
        (call $free (local.get $old) (local.get $old_size) (local.get $align))))
    (local.get $p))

  (func (export "canonical_abi_free") (param i32 i32 i32)
    (call $free (local.get 0) (local.get 1) (local.get 2)))

  (func (export "_initialize")
    (global.set $heap (global.get $heap_base))
    (global.set $inits (i32.add (global.get $inits) (i32.const 1))))

  (func (export "live-allocations") (result i32) (global.get $live))
  (func (export "init-count") (result i32) (global.get $inits))

  ;; --- power-of: func(base: s32, exp: s32) -> s32 ------------------------------
  (func (export "power-of") (param $base i32) (param $exp i32) (result i32)
    (local $r i32)
    (local.set $r (i32.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.le_s (local.get $exp) (i32.const 0)))
        (local.set $r (i32.mul (local.get $r) (local.get $base)))
        (local.set $exp (i32.sub (local.get $exp) (i32.const 1)))
        (br $next)))
    (local.get $r))

  ;; --- split-str: func(s: string, delimiter: string) -> list<subphrase> -------
  ;; subphrase { str: string, idx: s32 }: 12 bytes, align 4.
  (func $matches (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $no
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $no
          (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Stores piece k, s[from..to], as a fresh (owned) string in the array.
  (func $piece (param $out i32) (param $k i32) (param $s i32) (param $from i32) (param $to i32)
    (local $len i32) (local $p i32) (local $rec i32)
    (local.set $len (i32.sub (local.get $to) (local.get $from)))
    (local.set $p (call $alloc (i32.const 1) (local.get $len)))
    (memory.copy (local.get $p) (i32.add (local.get $s) (local.get $from)) (local.get $len))
    (local.set $rec (i32.add (local.get $out) (i32.mul (local.get $k) (i32.const 12))))
    (i32.store offset=0 (local.get $rec) (local.get $p))
    (i32.store offset=4 (local.get $rec) (local.get $len))
    (i32.store offset=8 (local.get $rec) (local.get $from)))

  (func (export "split-str") (param $s i32) (param $slen i32) (param $d i32) (param $dlen i32)
        (result i32)
    (local $n i32) (local $i i32) (local $start i32) (local $out i32) (local $k i32)
    ;; Count the pieces (an empty delimiter does not split).
    (local.set $n (i32.const 1))
    (if (local.get $dlen)
      (then
        (block $done
          (loop $scan
            (br_if $done (i32.gt_u (i32.add (local.get $i) (local.get $dlen)) (local.get $slen)))
            (if (call $matches (i32.add (local.get $s) (local.get $i)) (local.get $d) (local.get $dlen))
              (then
                (local.set $n (i32.add (local.get $n) (i32.const 1)))
                (local.set $i (i32.add (local.get $i) (local.get $dlen))))
              (else (local.set $i (i32.add (local.get $i) (i32.const 1)))))
            (br $scan)))))
    (local.set $out (call $alloc (i32.const 4) (i32.mul (local.get $n) (i32.const 12))))
    ;; Emit them.
    (local.set $i (i32.const 0))
    (if (local.get $dlen)
      (then
        (block $done
          (loop $scan
            (br_if $done (i32.gt_u (i32.add (local.get $i) (local.get $dlen)) (local.get $slen)))
            (if (call $matches (i32.add (local.get $s) (local.get $i)) (local.get $d) (local.get $dlen))
              (then
                (call $piece (local.get $out) (local.get $k) (local.get $s) (local.get $start) (local.get $i))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (local.set $i (i32.add (local.get $i) (local.get $dlen)))
                (local.set $start (local.get $i)))
              (else (local.set $i (i32.add (local.get $i) (i32.const 1)))))
            (br $scan)))))
    (call $piece (local.get $out) (local.get $k) (local.get $s) (local.get $start) (local.get $slen))
    ;; The arguments were given to us: Rust drops them when the function ends.
    (call $free (local.get $s) (local.get $slen) (i32.const 1))
    (call $free (local.get $d) (local.get $dlen) (i32.const 1))
    (i32.store offset=0 (global.get $ret) (local.get $out))
    (i32.store offset=4 (global.get $ret) (local.get $n))
    (global.get $ret))
)
