//! Who plays and what they play: the player id and the category names both modes use.

/// Longest category name, in bytes.
pub const MAX_CATEGORY_LEN: usize = 32;

/// A player, as a server or relay identifies it: the transport client id of its connection.
pub type PlayerId = u64;

/// Why a category name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CategoryError {
    /// Empty or longer than [`MAX_CATEGORY_LEN`] bytes.
    #[error("category must be 1 to {MAX_CATEGORY_LEN} bytes long, got {0}")]
    Length(usize),
    /// A character other than an ASCII letter, a digit, `-`, `_` or `.`.
    #[error("category contains {0:?}; use letters, digits, '-', '_' or '.'")]
    Character(char),
}

impl From<CategoryError> for String {
    fn from(error: CategoryError) -> Self {
        error.to_string()
    }
}

/// Checks a category name: 1 to [`MAX_CATEGORY_LEN`] bytes of ASCII letters, digits, `-`, `_`, `.`.
pub fn validate_category(category: &str) -> Result<(), CategoryError> {
    if category.is_empty() || category.len() > MAX_CATEGORY_LEN {
        return Err(CategoryError::Length(category.len()));
    }
    if let Some(c) = category
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(CategoryError::Character(c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_validated() {
        assert!(validate_category("ranked-1v1.eu_west").is_ok());
        assert!(validate_category("").is_err());
        assert!(validate_category(&"a".repeat(33)).is_err());
        assert!(validate_category("no spaces").is_err());
        assert!(validate_category("é").is_err());
    }
}
