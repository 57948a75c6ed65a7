"""activity_service: flash-sale activities and the seckill itself."""
