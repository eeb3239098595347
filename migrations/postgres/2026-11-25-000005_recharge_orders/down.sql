DROP TABLE recharge_orders;
