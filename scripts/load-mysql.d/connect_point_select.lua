-- One new connection per transaction: connect (the whole handshake and authentication), one
-- point select on sbtest1, disconnect. sysbench 1.0's oltp_point_select keeps its connections
-- for the whole run and has no option to reconnect, so scripts/load-mysql measures the
-- connection rate with this.
sysbench.cmdline.options = {
   table_size = {"Rows in sbtest1", 10000},
   -- Taken for oltp_point_select's sake (the script passes both the same options); one table.
   tables = {"Number of tables (sbtest1 only is read)", 1},
}

function thread_init()
   drv = sysbench.sql.driver()
end

function event()
   local con = drv:connect()
   con:query(string.format("SELECT c FROM sbtest1 WHERE id = %d",
                           sysbench.rand.default(1, sysbench.opt.table_size)))
   con:disconnect()
end
