"""Scores: the evaluation office's inputs, e-supervision deductions, ratings and the feed.

rules.py       config/scores.yaml as a frozen `ScoreRules`
periods.py     a period ("2025" or "2025-03"), closing it, frozen results, restatements
inputs.py      the office's input kinds, their columns and natural keys, and storing them
importer.py    CSV and XLSX files of those inputs, every bad row reported
cardcounts.py  the cards per department, month and level: one GROUP BY; their evidence
scoring.py     the computation itself, a pure function of inputs, card counts and rules
service.py     scoring a period from the database (inputs, cards, last year's results)
appeals.py     appeals against cards, decided by a supervisor, every step audited
operators.py   the evaluation office's, supervisors' and departments' bearer tokens
feed.py        the feed as JSON, CSV and an XLSX workbook
feedjob.py     the scheduled job writing and posting the feed
commands.py    the `esup-server` sub-commands for all of the above
"""
