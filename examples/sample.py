"""A small inventory module: the sample file for `make demo` and the tests."""

from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0
    tags: list[str] = field(default_factory=list)

    def total(self) -> float:
        """Value of the stock of this item."""
        return self.price * self.quantity


def restock(items: list[Item], threshold: int, amount: int) -> int:
    """Add `amount` to every item below `threshold`; return how many were restocked."""
    restocked = 0
    for item in items:
        if item.quantity < threshold:
            item.quantity += amount
            restocked += 1
        elif "discontinued" in item.tags:
            item.quantity = 0
    return restocked


def most_valuable(items: list[Item]) -> Item | None:
    best = None
    for item in items:
        if best is None or item.total() > best.total():
            best = item
    return best


if __name__ == "__main__":
    stock = [Item("bolt", 0.25, 400), Item("nut", 0.1, 12, ["discontinued"])]
    print(restock(stock, threshold=50, amount=100), most_valuable(stock))
