# sspose binary basics and `sspose init` bad input: one clear error line, non-zero exit.
. tests/lib.sh
CK=$T_TMP/ck.h5

out=$($SSPOSE --version) && echo "$out" | grep -q '^backends: cpu' && t_ok version_lists_backends || t_fail version_lists_backends "$out"
$SSPOSE init --help | grep -q 'usage: sspose init' && t_ok init_help || t_fail init_help "no usage text"
t_bad_input unknown_command "unknown command 'frobnicate'" $SSPOSE frobnicate
t_bad_input init_missing_out "--out CK.h5 is required" $SSPOSE init --config configs/tiny.ini
t_bad_input init_unknown_flag "unknown option '--bogus'" $SSPOSE init --bogus --out $CK
t_bad_input init_flag_without_value "needs a value" $SSPOSE init --out
t_bad_input init_missing_config "cannot open config 'nope.ini'" $SSPOSE init --config nope.ini --out $CK
printf '[model]\nwidht = 1\n' > $T_TMP/typo.ini
t_bad_input init_unknown_key "unknown config key 'model.widht'" $SSPOSE init --config $T_TMP/typo.ini --out $CK
printf '[modle]\nwidth = 1\n' > $T_TMP/sect.ini
t_bad_input init_unknown_section "unknown config section \[modle\]" $SSPOSE init --config $T_TMP/sect.ini --out $CK
t_bad_input init_bad_value "'model.stride' = 12|model.stride' must be 8 or 16" $SSPOSE init --set model.stride=12 --out $CK
t_bad_input init_non_number "'model.width' wants a number, got 'wide'" $SSPOSE init --set model.width=wide --out $CK
t_bad_input init_bad_beta "'loss.beta' must be" $SSPOSE init --set loss.beta=cubic --out $CK
t_bad_input init_bad_ss "'model.ss' must be off, p2h, h2p or both" $SSPOSE init --set model.ss=maybe --out $CK
t_bad_input init_bad_set_syntax "--set wants section.key=value" $SSPOSE init --set width --out $CK
t_bad_input init_input_not_multiple "must be a multiple of model.stride" $SSPOSE init --set model.input=100 --out $CK
t_bad_input init_unwritable "cannot create '/nonexistent/dir/ck.h5.tmp" $SSPOSE init --config configs/tiny.ini --out /nonexistent/dir/ck.h5
# a failed init leaves nothing behind and a good one leaves no temp file
ls $T_TMP/*.tmp.* >/dev/null 2>&1 && t_fail no_temp_left "temp file left" || t_ok no_temp_left
$SSPOSE init --config configs/tiny.ini --out $CK >/dev/null && [ -s $CK ] && ! ls $T_TMP/*.tmp.* >/dev/null 2>&1 \
  && t_ok init_writes_checkpoint || t_fail init_writes_checkpoint "no checkpoint"
t_end
