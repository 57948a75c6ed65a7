async def test_one_user_buys_once(api, stack):
    activity = await api.create_activity(stock=3)
    buyer = await api.new_user()

    first = await api.seckill(activity["id"], buyer.token)
    again = await api.seckill(activity["id"], buyer.token)

    assert first.status == 201, first
    assert again.status == 200 and again.body == first.body
    order = await api.call("GET", "order_service", f"/orders/{first.body['order_no']}", buyer.token)
    assert order.status == 200 and order.body["user_id"] == buyer.id
    rows = stack.query(
        "activity_service", "SELECT remaining FROM activities WHERE id = %s", (activity["id"],)
    )
    assert rows[0]["remaining"] == 2
