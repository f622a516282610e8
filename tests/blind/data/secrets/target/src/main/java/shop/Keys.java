package shop;

public final class Keys {
    static final String SIGNING = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCO0GiyxbSbO7S0EAOKJgRL/t/ip7MdPJOGdlyKOUvSzqUd+oZRZ+WOtNubCX0CoWygumrFBNXYsevgyMHFuN6cRqiT9+DUo6T+SsAe4sRdLjfs0GHYKe6KpgKrKDnZc9QohH86lfnsfLiP6FPYvqJ0Kyv/V5mesdEpAaS5d342ivqXVjG3GG6LBZO7SwqRq5tifnx/DyFqdWJMIJd6bKPUyUcoW+Q42TY1lKgpGA6jvy7NIe3e7ZT1TiogbNzlIarhRWH1x5gO3hXQr7EfJLtSnpbgFUuZAb64ryJyrRfzJTZ8WSPTwAyNb4XufOv46sdZ+YwAykm64NULFMmFX+sIDmEBtVZR44m";

    private Keys() {}
}
