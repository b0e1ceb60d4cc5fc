package checkout;

/** The price table has no price for a cart. */
public final class PriceMissingException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public PriceMissingException(String cart) {
        super("no price for " + cart);
    }
}
