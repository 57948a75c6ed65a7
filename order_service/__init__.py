"""order_service: the orders the seckill produces; users read and pay their own."""
