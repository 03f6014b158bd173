package com.example.demo;

import java.util.*;
import static java.lang.Math.max;

/** Docs. */
@SuppressWarnings("unchecked")
public class Sample<T> extends Base implements Runnable {
    private static final int MAX = 10;
    private String name = "x", other;

    public Sample(String name) {
        super();
        this.name = name;
    }

    @Override
    public void run() {
        int total = 0;
        for (String it : items()) {
            if (it.isEmpty()) {
                continue;
            } else if (it.length() > MAX) {
                break;
            }
            total += it.length();
            System.out.println(it + 'c');
        }
        switch (total) {
            case 0: case 1:
                total++;
                return;
            default:
                total--;
        }
        int k = switch (total) { case 2 -> 3; default -> { yield 4; } };
        for (int i = 0; i < 3; i++) { total = total > 1 ? i : -i; }
        while (total > 0) { total--; }
        do { total++; } while (total < 2);
        try {
            Object o = new ArrayList<T>();
            if (o instanceof List<?> l) { throw new IllegalStateException(); }
        } catch (RuntimeException | Error e) {
            e.printStackTrace();
        } finally {
            Runnable r = () -> System.gc();
            boolean b = true && null == this;
            long[] arr = new long[]{1L, 0x1F};
        }
    }

    interface Shape { double area(); }
    enum Color { RED, GREEN; Color() {} }
    record Pt(int x, int y) {}
}
