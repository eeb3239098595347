DROP TABLE budget_leases;
DROP TABLE budget_windows;
DROP TABLE budgets;
