"""The queue reader: what is waiting for Google in the MTA's own queue right now, and why.

command.py   which listing command (auto-detected or --queue.command), run streamed with a deadline
programs.py  the MTAs known and the programs that name them (what the configuration checks)
listing.py   the queued recipient every parser yields, bounded line splitting, unreadable entries
postfix.py   postqueue -j          exim.py  exim -bpr + msglog/
sendmail.py  mailq -v              opensmtpd.py  smtpctl show queue
classify.py  last delay reason -> Google-bound? category or unanswered kind (the log's rules, via shared.py)
domains.py   GoogleDomains: Workspace domains learned from the log, saved in the state file
reader.py    QueueReader: a listing every interval -> an immutable QueueSnapshot
collector.py the gmail_queue_* and gmail_exporter_queue_* metric families from the latest snapshot
"""
